/* A target for the access-policy leak tests, installed setuid-root or setgid by the test.
 *
 *   credtarget MODE [CODE]
 *
 * MODE says what to do with the credentials before announcing "ready" on stdout:
 *   keep      nothing (a setuid-root install keeps euid 0 and saved uid 0)
 *   dropuid   setresuid(ruid, ruid, ruid): back to the caller's uid (still non-dumpable)
 *   dropgid   setresgid(rgid, rgid, rgid): back to the caller's gid (still non-dumpable)
 *   nodump    prctl(PR_SET_DUMPABLE, 0)
 *   sleep20   no "ready": sleep 20 ms and exit CODE (the time-of-check/time-of-use case)
 * Then each byte on stdin is a command: 'n' prctl(PR_SET_DUMPABLE, 0) (answers "ok"),
 * 'x' or EOF exits with CODE (default 7).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "keep";
    int code = argc > 2 ? atoi(argv[2]) : 7;
    uid_t ruid = getuid();
    gid_t rgid = getgid();
    if (!strcmp(mode, "sleep20")) {
        usleep(20000);
        _exit(code);
    }
    if (!strcmp(mode, "dropuid") && setresuid(ruid, ruid, ruid) != 0) {
        perror("setresuid");
        return 70;
    }
    if (!strcmp(mode, "dropgid") && setresgid(rgid, rgid, rgid) != 0) {
        perror("setresgid");
        return 70;
    }
    if (!strcmp(mode, "nodump") && prctl(PR_SET_DUMPABLE, 0) != 0) {
        perror("prctl");
        return 70;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        char c;
        if (read(0, &c, 1) != 1 || c == 'x')
            _exit(code);
        if (c == 'n') {
            prctl(PR_SET_DUMPABLE, 0);
            printf("ok\n");
            fflush(stdout);
        }
    }
}
