/* storm: K forkers each fork N short children that _exit(0) at once (no exec), as fast as
 * they can or paced to a total rate; used by bench/watch_storm.py.
 *
 *   storm K N RATE NAME OUT     RATE: total exits/s over all forkers (0: as fast as possible)
 *
 * Each forker sets its comm to NAME (PR_SET_NAME, so its children inherit it), waits on
 * stdin for a "go" byte shared by all forkers (a pipe from the parent), forks and reaps its N
 * children one at a time (fork, _exit(0) in the child, waitpid in the forker), and writes
 * the children's pids (int32, host order) to OUT.K.  The top process prints the wall time of
 * the whole storm (seconds) to stdout after every forker is done.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: storm K N RATE NAME OUT\n");
        return 2;
    }
    int k = atoi(argv[1]);
    long n = atol(argv[2]);
    double rate = atof(argv[3]);
    const char *name = argv[4], *out = argv[5];
    int go[2];
    if (k < 1 || n < 1 || pipe(go) < 0) return 2;
    for (int f = 0; f < k; f++) {
        pid_t p = fork();
        if (p < 0) { perror("fork"); return 1; }
        if (p) continue;
        close(go[1]);
        prctl(PR_SET_NAME, name, 0, 0, 0);
        int32_t *pids = malloc(sizeof(int32_t) * n);
        char c;
        if (!pids || read(go[0], &c, 1) != 0) _exit(1); /* EOF on the pipe: go */
        double per = rate > 0 ? k / rate : 0, t0 = now();
        for (long i = 0; i < n; i++) {
            if (per > 0) {
                double due = t0 + i * per;
                double left = due - now();
                if (left > 0) {
                    struct timespec ts = {(time_t)left, (long)((left - (time_t)left) * 1e9)};
                    nanosleep(&ts, NULL);
                }
            }
            pid_t c2 = fork();
            if (c2 == 0) _exit(0);
            if (c2 < 0) { i--; continue; }
            pids[i] = c2;
            waitpid(c2, NULL, 0);
        }
        char path[4096];
        snprintf(path, sizeof path, "%s.%d", out, f);
        FILE *fp = fopen(path, "wb");
        if (!fp || fwrite(pids, sizeof(int32_t), n, fp) != (size_t)n || fclose(fp)) _exit(1);
        _exit(0);
    }
    close(go[0]);
    /* everyone is waiting on the pipe: close it to start them at once */
    double t0 = now();
    close(go[1]);
    int bad = 0, st;
    for (int f = 0; f < k; f++) {
        if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) bad = 1;
    }
    printf("%.6f\n", now() - t0);
    return bad;
}
