/* A thread group whose leader exits first, on cue, and whose last thread exits with a code.
 *
 * Prints "ready" once its worker thread runs.  On the first line of stdin the main thread calls
 * pthread_exit (the kernel sends the leader's exit event, code 0, while the group lives on); the
 * worker joins it and prints "leader-gone".  On the next line the worker calls exit(argv[1])
 * (7 if not given): a group exit, so the process's status is that code, not the leader's 0.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_t leader;
static int status = 7;

static int line(void) {
    char c;
    ssize_t n;
    while ((n = read(0, &c, 1)) == 1)
        if (c == '\n')
            return 0;
    return -1;
}

static void *worker(void *arg) {
    (void)arg;
    pthread_join(leader, NULL);
    fputs("leader-gone\n", stdout);
    fflush(stdout);
    if (line() < 0)
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
    fputs("ready\n", stdout);
    fflush(stdout);
    if (line() < 0)
        return 2;
    pthread_exit(NULL);
}
