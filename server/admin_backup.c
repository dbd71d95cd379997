/*
 * admin_backup.c — `backup FILE` and `restore FILE`, both through SQLite's online backup API.
 *
 * backup copies the whole store (engine tables and srv_ tables) in one read transaction
 * (sqlite3_backup_step(-1)), so the copy is one consistent moment of the store even while
 * the daemon keeps committing (WAL: the daemon is not blocked). It is written to
 * FILE.tmp-PID, checked (PRAGMA quick_check), fsynced and renamed over FILE, so FILE is
 * always either the previous backup or a complete new one.
 *
 * restore is the reverse, into the store path, and refuses while a daemon holds the store:
 * the daemon keeps an flock on "<db>.lock" for its lifetime (main.c), and restore takes the
 * same lock for its duration, so a daemon cannot start half-way either. The file to restore
 * must pass quick_check and look like a fieldsync store (the engine's or the server's meta
 * table: a store only the admin commands have touched has no engine tables yet).
 * A restore goes back in time: what was acknowledged after the backup is gone, devices whose
 * cursor is past the restored log get CURSOR, and devices whose sequence is past it get
 * ESEQ_GAP; docs/operations.md ("Restore") says what to do about both.
 */
#include "admin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static bool quick_check_ok(sqlite3 *db)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL))
        return false;
    bool ok = sqlite3_step(s) == SQLITE_ROW &&
              !strcmp((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
    return ok;
}

static int64_t scalar(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL))
        return -1;
    int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return v;
}

/* Copies src into dst in one step. Returns SQLITE_DONE or the SQLite error. */
static int copy_db(sqlite3 *dst, sqlite3 *src)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b)
        return sqlite3_errcode(dst);
    int rc;
    for (int tries = 0; tries < 200; tries++) {
        rc = sqlite3_backup_step(b, -1);
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
            break;
        sqlite3_sleep(50);
    }
    int fin = sqlite3_backup_finish(b);
    return rc == SQLITE_DONE && fin == SQLITE_OK ? SQLITE_DONE : (rc == SQLITE_DONE ? fin : rc);
}

static int fsync_path(const char *path, bool dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static void dir_of(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == out)
        out[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(out, cap, ".");
}

int cmd_backup(admin_ctx *a)
{
    const char *out = a->pos[0];
    int rc = admin_db(a, false);
    if (rc)
        return rc;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
    unlink(tmp);
    sqlite3 *dst = NULL;
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL)) {
        rc = admin_fail(a, SRV_EXIT_STORE, "cannot create %s: %s", tmp,
                        dst ? sqlite3_errmsg(dst) : "out of memory");
        sqlite3_close(dst);
        return rc;
    }
    rc = copy_db(dst, a->db);
    if (rc != SQLITE_DONE || !quick_check_ok(dst)) {
        char why[256];
        snprintf(why, sizeof why, "%s", rc != SQLITE_DONE ? sqlite3_errstr(rc) : "the copy fails quick_check");
        sqlite3_close(dst);
        unlink(tmp);
        return admin_fail(a, SRV_EXIT_STORE, "backup of %s failed: %s", a->db_path, why);
    }
    int64_t log_end = scalar(dst, "SELECT coalesce(max(seq), 0) FROM log");
    sqlite3_close(dst);
    char dir[4096];
    dir_of(out, dir, sizeof dir);
    if (fsync_path(tmp, false) || rename(tmp, out) || fsync_path(dir, true)) {
        int err = errno;
        unlink(tmp);
        return admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", out, strerror(err));
    }
    struct stat sb;
    int64_t bytes = stat(out, &sb) == 0 ? (int64_t)sb.st_size : 0;
    if (a->json) {
        printf("{\"ok\":true,\"backup\":");
        json_str(stdout, out);
        printf(",\"bytes\":%lld,\"log_end\":%lld}\n", (long long)bytes,
               (long long)(log_end < 0 ? 0 : log_end));
    } else {
        printf("backup of %s written to %s (%lld bytes, log up to %lld)\n", a->db_path, out,
               (long long)bytes, (long long)(log_end < 0 ? 0 : log_end));
    }
    return SRV_EXIT_OK;
}

/* Takes the daemon's lock on <db>.lock. Returns the fd (keep it open), or -1 after printing
 * who holds it. */
static int take_lock(admin_ctx *a, int *exit_code)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.lock", a->db_path);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        *exit_code = admin_fail(a, SRV_EXIT_STORE, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = read(fd, pid, sizeof pid - 1);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        *exit_code = admin_fail(a, SRV_EXIT_NOTFOUND,
                                "a fieldsyncd (pid %s) is serving %s: stop it (kill -TERM %s), "
                                "restore, then start it again",
                                pid[0] ? pid : "?", a->db_path, pid[0] ? pid : "PID");
        return -1;
    }
    return fd;
}

int cmd_restore(admin_ctx *a)
{
    const char *in = a->pos[0];
    struct stat sb;
    if (stat(in, &sb) != 0 || !S_ISREG(sb.st_mode))
        return admin_fail(a, SRV_EXIT_NOTFOUND, "no backup file %s", in);
    int rc;
    int lock = take_lock(a, &rc);
    if (lock < 0)
        return rc;
    sqlite3 *src = NULL, *dst = NULL;
    rc = SRV_EXIT_OK;
    if (sqlite3_open_v2(in, &src, SQLITE_OPEN_READONLY, NULL) || !quick_check_ok(src) ||
        scalar(src, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                    "name IN ('meta', 'srv_meta')") < 1) {
        rc = admin_fail(a, SRV_EXIT_STORE,
                        "%s is not an intact fieldsync store (quick_check failed, or neither "
                        "the engine's nor the server's tables): nothing restored",
                        in);
        goto done;
    }
    if (sqlite3_open_v2(a->db_path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL)) {
        rc = admin_fail(a, SRV_EXIT_STORE, "cannot open %s: %s", a->db_path,
                        dst ? sqlite3_errmsg(dst) : "out of memory");
        goto done;
    }
    sqlite3_busy_timeout(dst, 5000);
    /* a backup has its store's page size (a store made before 16 KiB pages has 4 KiB);
     * SQLite copies into a WAL file only of the same page size, so the store leaves WAL for
     * the copy and takes the backup's (the daemon is stopped: the lock above) */
    bool relog = scalar(src, "PRAGMA page_size") != scalar(dst, "PRAGMA page_size");
    int brc = relog ? sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL)
                    : SQLITE_OK;
    if (brc == SQLITE_OK)
        brc = copy_db(dst, src);
    if (relog && sqlite3_exec(dst, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK &&
        brc == SQLITE_DONE)
        brc = sqlite3_errcode(dst);
    if (brc != SQLITE_DONE) {
        rc = admin_fail(a, SRV_EXIT_STORE, "restore into %s failed: %s (the store is unchanged)",
                        a->db_path, sqlite3_errstr(brc));
        goto done;
    }
    int64_t log_end = scalar(dst, "SELECT coalesce(max(seq), 0) FROM log");
    if (log_end < 0)
        log_end = 0; /* no engine tables yet */
    /* devices may hold cursors into the log the restore just cut off: the daemon makes each
     * pull again from 0 (srvdb_restore_mark, handle_pull.c) */
    fs_error me = {0};
    if (srvdb_migrate(dst, &me) || srvdb_restore_mark(dst, log_end, &me)) {
        rc = admin_fail(a, SRV_EXIT_STORE,
                        "%s restored, but noting the restore for the devices failed: %s; run "
                        "restore again",
                        a->db_path, me.msg);
        goto done;
    }
    if (a->json) {
        printf("{\"ok\":true,\"restored\":");
        json_str(stdout, in);
        printf(",\"db\":");
        json_str(stdout, a->db_path);
        printf(",\"log_end\":%lld}\n", (long long)log_end);
    } else {
        printf("%s restored from %s (log up to %lld); start fieldsyncd again\n", a->db_path, in,
               (long long)log_end);
    }
done:
    sqlite3_close(src);
    sqlite3_close(dst);
    close(lock);
    return rc;
}
