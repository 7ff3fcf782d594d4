/* A process whose main thread exits first (pthread_exit) while another thread lives on.
 *
 * Usage: leader_exits_first [STATUS [cue]]  (STATUS defaults to 3)
 *
 * The main thread exits at once, or with "cue" only after printing "ready" and reading one
 * line of stdin.  The worker joins it, so it knows the leader is gone (its /proc state is then
 * Z; the kernel has sent the leader's own exit event, code 0), prints "leader-gone", waits for any
 * input on stdin (or EOF), and exits the whole group with STATUS (a group exit: the process's status is
 * STATUS, not the leader's 0).  Used to prove that a zombie *leader* is not a dead *process*,
 * and that an early thread's exit event is not taken for the process's status.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_t leader;
static int status = 3;

static int line(void) {
    char c;
    while (read(0, &c, 1) == 1)
        if (c == '\n')
            return 0;
    return -1;
}

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
    if (argc > 2 && strcmp(argv[2], "cue") == 0) {
        fputs("ready\n", stdout);
        fflush(stdout);
        if (line() < 0)
            return 2;
    }
    pthread_exit(NULL);
}
