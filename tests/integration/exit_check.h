/*
 * exit_check.h — how the integration helpers judge a process they stopped (fieldsyncd, the
 * fieldsync CLI): it must have exited, with the status the test expects, and its log must
 * hold no sanitizer report. Shared by client_support.c, fault_support.c and server_client.c
 * (header-only: the three are linked in different combinations).
 *
 * Why the log and not only the status: in the ASan build (scripts/test.sh, FS_SANITIZE=ON)
 * LeakSanitizer runs when the process exits and, with ASAN_OPTIONS=abort_on_error=1 (set for
 * every test by tests/integration/fault.cmake), turns a leak into SIGABRT; without that
 * option a leak is exit status 1 (ASan's default exitcode) or 23 (LSan's). The report itself
 * goes to the process's stderr, which the helpers send to the test's log file, so the
 * failure message names that file. A report that did not change the status (a UBSan
 * diagnostic under halt_on_error=0, say) still fails the test through the log scan.
 *
 * SIGKILL is the only death a helper may accept, and only where the test sends it on
 * purpose (kill -9 tests): such a process never reaches the leak check.
 */
#ifndef FS_EXIT_CHECK_H
#define FS_EXIT_CHECK_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>

/* First line of the file at path that is part of a sanitizer report (AddressSanitizer,
 * LeakSanitizer, UndefinedBehaviorSanitizer, "runtime error:"), into line; false when there
 * is none or the file cannot be read. */
static inline bool xc_log_report(const char *path, char *line, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[2048];
    bool found = false;
    while (!found && fgets(buf, sizeof buf, f))
        if (strstr(buf, "Sanitizer") || strstr(buf, "runtime error:")) {
            size_t n = strlen(buf) < cap ? strlen(buf) : cap - 1;
            memcpy(line, buf, n);
            line[n] = '\0';
            found = true;
        }
    fclose(f);
    return found;
}

/* Prints the last 6,000 bytes of the file at path on stderr. */
static inline void xc_log_tail(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, n > 6000 ? n - 6000 : 0, SEEK_SET);
    char buf[6001];
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    buf[k] = '\0';
    fclose(f);
    fprintf(stderr, "---- %s (tail) ----\n%s---- end ----\n", path, buf);
}

/* Aborts the test, with the log's tail and a message naming the log, when the wait status
 * st of process `who` (pid) says it died of a signal (other than SIGKILL when kill_ok) or
 * when its log (path; NULL when its stderr is the test's own) has a sanitizer report.
 * Returns the exit status (128 + signal for an accepted SIGKILL) otherwise; whether that
 * status is the one expected is the caller's business. */
static inline int xc_check(const char *who, pid_t pid, int st, const char *log, bool kill_ok)
{
    char line[512] = "";
    bool report = log && xc_log_report(log, line, sizeof line);
    bool killed_ok = kill_ok && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
    if (report || (WIFSIGNALED(st) && !killed_ok) || (!WIFEXITED(st) && !WIFSIGNALED(st))) {
        if (log)
            xc_log_tail(log);
        if (WIFSIGNALED(st))
            fprintf(stderr, "%s (pid %d) died of signal %d (%s)", who, (int)pid, WTERMSIG(st),
                    strsignal(WTERMSIG(st)));
        else
            fprintf(stderr, "%s (pid %d) exited with status %d", who, (int)pid,
                    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        if (report)
            fprintf(stderr, "; its log %s has a sanitizer report, first line:\n  %s", log, line);
        else
            fprintf(stderr, "; SIGABRT in the ASan build is how LeakSanitizer (and ASan, "
                            "UBSan) end a process: see the report in %s\n",
                    log ? log : "the test's stderr above");
        abort();
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#endif
