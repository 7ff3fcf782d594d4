/* The main thread calls pthread_exit while a worker lives on (issue 5 tests).  The worker
 * joins the leader (so the leader is gone, /proc shows it Z), prints "leader-gone", waits for
 * a byte on stdin and then exits the whole process with status 4. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_t leader;

static void *worker(void *arg) {
    char c;
    (void)arg;
    pthread_join(leader, NULL);
    puts("leader-gone");
    fflush(stdout);
    if (read(0, &c, 1) < 0)
        exit(2);
    exit(4);
}

int main(void) {
    pthread_t t;
    leader = pthread_self();
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    pthread_exit(NULL);
}
