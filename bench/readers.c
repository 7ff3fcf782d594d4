/* N blocked readers without an interpreter in the way: the client side of fs_latency.py's
 * c-* modes.  A Python client's N threads must each take the GIL back when their read()
 * returns, and those hand-offs queue behind each other (tens of microseconds each), so with
 * 1,000 threads the client, not the daemon, sets the pace.  Here each thread stamps
 * CLOCK_MONOTONIC the moment its syscall returns.
 *
 *   readers read PATH N   N threads, each blocked in read() on its own open of PATH
 *   readers poll PID N    N threads, each blocked in poll() on its own pidfd of PID (the
 *                         floor: the kernel wakes each thread directly)
 *
 * Prints "ready" once every thread is about to block, then waits for the deaths; prints one
 * stamp (ns) per thread and "end" once all have returned.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

static int *fds;
static long long *stamps;
static int mode_poll;
static pthread_barrier_t barrier;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *run(void *arg) {
    long i = (long)arg;
    char c;
    pthread_barrier_wait(&barrier);
    if (mode_poll) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        while (poll(&p, 1, -1) < 0) {
        }
    } else if (read(fds[i], &c, 1) < 0) {
        perror("read");
    }
    stamps[i] = now_ns();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s read PATH N | poll PID N\n", argv[0]);
        return 2;
    }
    mode_poll = strcmp(argv[1], "poll") == 0;
    long n = atol(argv[3]);
    fds = calloc(n, sizeof *fds);
    stamps = calloc(n, sizeof *stamps);
    pthread_t *ts = calloc(n, sizeof *ts);
    for (long i = 0; i < n; i++) {
        fds[i] = mode_poll ? (int)syscall(SYS_pidfd_open, atoi(argv[2]), 0)
                           : open(argv[2], O_RDONLY);
        if (fds[i] < 0) {
            perror("open");
            return 1;
        }
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_barrier_init(&barrier, NULL, (unsigned)n + 1);
    for (long i = 0; i < n; i++) {
        if (pthread_create(&ts[i], &attr, run, (void *)i) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    pthread_barrier_wait(&barrier);
    printf("ready\n");
    fflush(stdout);
    for (long i = 0; i < n; i++)
        pthread_join(ts[i], NULL);
    for (long i = 0; i < n; i++)
        printf("%lld\n", stamps[i]);
    printf("end\n");
    return 0;
}
