/* Benchmark victims: N processes that are children of this keeper, not of the waiter.
 *
 *   victims N LEAD_MS SPACING_US SEED        die at staggered, known times, then report
 *   victims N idle                           live until this keeper's stdin says "go"/EOF
 *
 * The keeper forks N children and prints their pids on one line.  Each child blocks on a
 * shared "go" pipe.  When the keeper reads "go" from stdin it sets T0 = now + LEAD_MS, closes
 * the pipe, and every child i sleeps (clock_nanosleep, CLOCK_MONOTONIC, absolute) until
 * T0 + rank[i] * SPACING_US (rank = a seeded random permutation), records its own death time
 * (CLOCK_MONOTONIC, ns) in shared memory just before _exit(0), and the keeper reaps it.  When all
 * are reaped the keeper prints "pid death_ns" lines, then "end".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: victims N LEAD_MS SPACING_US SEED | victims N idle\n");
        return 2;
    }
    long n = atol(argv[1]);
    int idle = strcmp(argv[2], "idle") == 0;
    long lead_ms = idle ? 0 : atol(argv[2]);
    long spacing_us = idle ? 0 : atol(argv[3]);
    unsigned seed = idle ? 1 : (unsigned)atol(argv[4]);

    /* shared: [0] = T0, [1 + i] = death time of child i */
    int64_t *shm = mmap(NULL, (size_t)(n + 1) * sizeof(int64_t), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    long *rank = malloc((size_t)n * sizeof(long));
    pid_t *pids = malloc((size_t)n * sizeof(pid_t));
    if (shm == MAP_FAILED || !rank || !pids) { perror("alloc"); return 1; }
    for (long i = 0; i < n; i++) rank[i] = i;
    for (long i = n - 1; i > 0; i--) {           /* Fisher-Yates */
        long j = rand_r(&seed) % (i + 1);
        long t = rank[i]; rank[i] = rank[j]; rank[j] = t;
    }
    int go[2];
    if (pipe(go) < 0) { perror("pipe"); return 1; }
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); kill(0, SIGKILL); return 1; }
        if (pid == 0) {
            char c;
            close(go[1]);
            while (read(go[0], &c, 1) < 0 && errno == EINTR) {}
            if (idle) { for (;;) pause(); }
            int64_t when = shm[0] + rank[i] * spacing_us * 1000LL;
            struct timespec ts = { when / 1000000000LL, when % 1000000000LL };
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
            shm[1 + i] = now_ns();
            _exit(0);
        }
        pids[i] = pid;
    }
    close(go[0]);
    for (long i = 0; i < n; i++) printf("%d%c", pids[i], i + 1 < n ? ' ' : '\n');
    fflush(stdout);

    char line[64];
    if (!fgets(line, sizeof line, stdin) || idle) {
        for (long i = 0; i < n; i++) kill(pids[i], SIGKILL);   /* unreaped: safe */
        while (wait(NULL) > 0 || errno == EINTR) {}
        return 0;
    }
    shm[0] = now_ns() + lead_ms * 1000000LL;
    close(go[1]);                                              /* everyone wakes */
    for (long left = n; left > 0;) {
        if (wait(NULL) > 0) left--;
        else if (errno != EINTR) break;
    }
    printf("t0 %lld\n", (long long)shm[0]);
    for (long i = 0; i < n; i++) printf("%d %lld\n", pids[i], (long long)shm[1 + i]);
    printf("end\n");
    return 0;
}
