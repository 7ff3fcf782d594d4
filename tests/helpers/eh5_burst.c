/* eh5_burst N MODE [zero]: make N short-lived child processes (issue 5 tests).
 *
 * Child i exits with status (i % 255) + 1, or 0 with the "zero" argument.  Each child's
 * "PID CODE" is printed on stdout.
 *   seq       fork a child that exits at once, reap it, then the next (short-lived processes)
 *   together  fork all N first (each blocks reading a pipe), print "ready", wait for a line on
 *             stdin, then close the pipe so that all N exit at the same moment; reap them all.
 * "done" is printed at the end.  The process names itself "eh5_burst" (prctl PR_SET_NAME, so
 * the name travels in a proc connector COMM event) and its children inherit that name; with
 * "noname" it keeps the name exec gave it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    int n = atoi(argv[1]);
    int together = strcmp(argv[2], "together") == 0;
    int zero = argc > 3 && strcmp(argv[3], "zero") == 0;
    int noname = argc > 3 && strcmp(argv[argc - 1], "noname") == 0;
    if (!noname)
        prctl(PR_SET_NAME, "eh5_burst", 0, 0, 0);
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    for (int i = 0; i < n; i++) {
        int code = zero ? 0 : (i % 255) + 1;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            if (together) {
                char c;
                close(fds[1]);
                while (read(fds[0], &c, 1) > 0) {
                }
            }
            _exit(code);
        }
        printf("%d %d\n", (int)pid, code);
        if (!together)
            waitpid(pid, NULL, 0);
    }
    if (together) {
        char line[64];
        printf("ready\n");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin))
            return 1;
        close(fds[1]);
        while (wait(NULL) > 0) {
        }
    }
    printf("done\n");
    fflush(stdout);
    return 0;
}
