/* A process whose main thread exits first (pthread_exit) while another thread lives on.
 *
 * The worker joins the main thread, so it knows the leader is gone (its /proc state is then Z),
 * prints "leader-gone", waits for input on stdin, and exits the whole group with status
 * argv[1] (3 if not given).  Used to prove that a zombie *leader* is not a dead *process*.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_t leader;
static int status = 3;

static void *worker(void *arg) {
    char buf[16];
    (void)arg;
    pthread_join(leader, NULL);
    fputs("leader-gone\n", stdout);
    fflush(stdout);
    if (read(0, buf, sizeof buf) < 0)
        exit(2);
    exit(status);
}

int main(int argc, char **argv) {
    pthread_t t;
    if (argc > 1)
        status = atoi(argv[1]);
    leader = pthread_self();
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    pthread_exit(NULL);
}
