/*
 * fault_support.h — what the fault tests (fault_*.c) add to client_support.h: starting the
 * real fieldsyncd with an environment and arguments of the test's choosing (FIELDSYNC_FAULT,
 * --idle-timeout, a file-size limit), waiting for it to die, comparing replicas by the
 * engine's state hash, and reading a process's descriptors and memory from /proc.
 *
 * Like client_support.c, every helper that fails prints why and aborts (tests/check.h).
 */
#ifndef FS_FAULT_SUPPORT_H
#define FS_FAULT_SUPPORT_H

#include "client_support.h"
#include "server_client.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ft_opts {
    const char *fault;          /* FIELDSYNC_FAULT for the daemon, NULL for none */
    const char *const *args;    /* extra arguments, NULL-terminated list, or NULL */
    long long fsize_limit;      /* > 0: RLIMIT_FSIZE of the daemon (bytes), SIGXFSZ ignored */
    bool expect_fail;           /* the daemon is expected to exit before listening */
    bool same_port;             /* listen on s->port again (a restart: devices keep the URL) */
    int uid;                    /* > 0: run the daemon as this user (and group) */
} ft_opts;

/* Starts fieldsyncd on s->db (see it_srv_start) with o (may be NULL). Its stderr goes to
 * s->dir/server.log (appended). With o->expect_fail, returns its exit status once it exited
 * without listening (aborts if it listens); otherwise returns 0 once it listens. */
int ft_srv_start(srv *s, const ft_opts *o);
/* Waits up to ms for the daemon to exit; returns its wait status, or -1 on timeout (the
 * daemon is then left running). Clears s->pid when it exited. Aborts the test when it died
 * of a signal other than SIGKILL or its log has a sanitizer report (exit_check.h). */
int ft_srv_wait(srv *s, int ms);
/* Stops the daemon with SIGTERM and checks it exited 0 and that its log (s->dir/server.log)
 * has no sanitizer report (ASan, LeakSanitizer, UBSan runtime errors). */
void ft_srv_stop(srv *s);
/* Prints the last bytes of s->dir/server.log on stderr (after a failure). */
void ft_dump_log(const srv *s);

/* The engine's state hash (records and fields) of a store file: a device replica or a
 * stopped server's store (opened as the authority, which replays an unflushed log tail).
 * Leaves the file's saved clock alone. */
void ft_state_hash(const char *dbfile, bool authority, uint64_t out[2]);
/* Aborts unless the files' state hashes are equal (names for the message). */
void ft_check_same_state(const char *a, bool auth_a, const char *b, bool auth_b);

/* Open descriptors (/proc/PID/fd entries) and resident memory in KiB (VmRSS). */
long ft_fd_count(pid_t pid);
long ft_rss_kb(pid_t pid);

/* ---- a deployment for the raw-socket tests (server_client.h) ------------------------ */

/* Townships T1 (villages V1, V2) and T2 (village W1); users and one device each:
 *   ana, bo  visitors of V1      sue  supervisor of T1     val  volunteer of V1
 *   oz       visitor of W1       tom  supervisor of T2 */
typedef struct ft_world {
    tenv t;
    daemon_proc d;
    enrolled ana, bo, sue, val, oz, tom;
} ft_world;

/* Makes the store and users; does not start the daemon (daemon_start(&w->t, &w->d, ...)). */
void ft_world_init(ft_world *w, int argc, char **argv);
/* Stops the daemon (SIGTERM, must exit 0) and removes the directory. */
void ft_world_done(ft_world *w);
/* fieldsyncd admin ARGS... (NULL-terminated); aborts unless it exits 0. */
void ft_admin(tenv *t, ...);
/* Opens a READY session of dev (aborts if refused). */
void ft_open(fsc *c, ft_world *w, const enrolled *dev);

/* Device id text without dashes (for X'...' literals in SQL): it_hex_id. */
void ft_hex_id(const char *id, char *hex);

/* A binary's cases: one CTest test per case (fault.cmake), named by the last argument. */
typedef struct ft_case {
    const char *name;
    void (*fn)(int argc, char **argv);
} ft_case;
/* The main() of a binary with cases: line-buffered stdout, SIGPIPE ignored, runs the case
 * named by argv's last argument and prints "PROG CASE: ok"; returns 0, or 2 (with the usage)
 * when no case has that name. */
int ft_main_cases(int argc, char **argv, const char *prog, const ft_case *cases, size_t n);

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t ft_now_ms(void);

/* Environment flag (non-empty, not "0"). */
bool ft_env_flag(const char *name);
/* Environment number, def if unset. */
long ft_env_long(const char *name, long def);

#endif
