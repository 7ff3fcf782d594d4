/* Leader exit events that are not process exits (review tests for exithand watch).
 * Starts only after reading one byte from stdin, so a watcher can be set up on its pid.
 *
 *   review_threads exec          a second thread calls execve: the kernel kills the leader
 *                                first (de_thread), which sends an exit event with pid == tgid
 *                                and status 0; the process goes on as "sh -c ..." under the same
 *                                pid, prints "exec-done", reads a line, exits 5.
 *   review_threads pthread_exit  the leader calls pthread_exit; a worker joins it, prints
 *                                "leader-gone", reads a byte, exits the process with 4. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_t leader;

static void *do_exec(void *arg) {
    char *argv[] = {"sh", "-c", "echo exec-done; read x; exit 5", NULL};
    (void)arg;
    execv("/bin/sh", argv);
    _exit(127);
}

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

int main(int argc, char **argv) {
    pthread_t t;
    char c;
    if (argc < 2 || read(0, &c, 1) != 1)
        return 2;
    if (strcmp(argv[1], "exec") == 0) {
        if (pthread_create(&t, NULL, do_exec, NULL) != 0)
            return 1;
        for (;;)
            pause();
    }
    leader = pthread_self();
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    pthread_exit(NULL);
}
