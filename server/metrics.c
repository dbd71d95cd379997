/*
 * metrics.c — the server's counters and their Prometheus text exposition (GET /metrics).
 *
 * Counters are plain integers updated on the service thread; rendering reads them on the same
 * thread, so there is no locking. Names follow Prometheus conventions (_total for counters,
 * base units: seconds, bytes). docs/operations.md lists every metric and what to watch.
 *
 * Deliberately not here: per-device or per-user labels (unbounded cardinality; use the logs
 * and `fieldsyncd admin device list` for that).
 */
#include "server.h"

#include <string.h>
#include <sys/stat.h>

/* Upper bounds of the batch apply latency buckets, seconds. */
static const double apply_bounds[METRICS_APPLY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005,
                                                          0.01,   0.025, 0.05,   0.1,
                                                          0.25,   0.5,   1.0,    2.5};

void metrics_apply_observe(srv_metrics *m, double seconds)
{
    int i = 0;
    while (i < METRICS_APPLY_BUCKETS && seconds > apply_bounds[i])
        i++;
    m->apply_buckets[i]++;
    m->apply_seconds_sum += seconds;
    m->batches++;
}

void metrics_result(srv_metrics *m, const apply_result *r)
{
    switch (r->status) {
    case APPLY_ACCEPTED: m->changes_accepted++; break;
    case APPLY_DUPLICATE: m->changes_duplicate++; break;
    default: {
        int idx = -r->code;
        if (idx > 0 && idx < 128)
            m->changes_refused[idx]++;
        else
            m->changes_refused[0]++;
    }
    }
}

static int64_t file_size(const char *path, const char *suffix)
{
    char p[4096];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    struct stat sb;
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

void metrics_render(server *srv, strbuf *b)
{
    const srv_metrics *m = &srv->m;
    unsigned ready = 0, subscribed = 0;
    for (session *s = srv->sessions; s; s = s->next) {
        ready += s->state == SS_READY;
        subscribed += s->state == SS_READY && s->sub != SUB_NONE;
    }
    sb_printf(b, "# HELP fieldsync_sessions WebSocket sessions connected now, by state.\n"
                 "# TYPE fieldsync_sessions gauge\n"
                 "fieldsync_sessions{state=\"ready\"} %u\n"
                 "fieldsync_sessions{state=\"other\"} %u\n",
              ready, srv->n_sessions - ready);
    sb_printf(b, "# HELP fieldsync_subscribers Sessions subscribed to ledger events.\n"
                 "# TYPE fieldsync_subscribers gauge\nfieldsync_subscribers %u\n",
              subscribed);
    sb_printf(b, "# HELP fieldsync_sessions_opened_total Hellos answered with welcome.\n"
                 "# TYPE fieldsync_sessions_opened_total counter\n"
                 "fieldsync_sessions_opened_total %llu\n",
              (unsigned long long)m->sessions_opened);
    sb_printf(b, "# HELP fieldsync_hello_failures_total Hellos refused (auth, schema, limits).\n"
                 "# TYPE fieldsync_hello_failures_total counter\n"
                 "fieldsync_hello_failures_total %llu\n",
              (unsigned long long)m->hello_failures);
    sb_printf(b, "# HELP fieldsync_changes_total Pushed changes by result.\n"
                 "# TYPE fieldsync_changes_total counter\n"
                 "fieldsync_changes_total{result=\"accepted\"} %llu\n"
                 "fieldsync_changes_total{result=\"duplicate\"} %llu\n",
              (unsigned long long)m->changes_accepted,
              (unsigned long long)m->changes_duplicate);
    sb_printf(b, "# HELP fieldsync_changes_refused_total Refused changes by reason.\n"
                 "# TYPE fieldsync_changes_refused_total counter\n");
    for (int i = 0; i < 128; i++)
        if (m->changes_refused[i])
            sb_printf(b, "fieldsync_changes_refused_total{reason=\"%s\"} %llu\n",
                      i ? fs_errname(-i) : "OTHER", (unsigned long long)m->changes_refused[i]);
    sb_printf(b, "# HELP fieldsync_batch_apply_seconds Time to apply and commit one push.\n"
                 "# TYPE fieldsync_batch_apply_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < METRICS_APPLY_BUCKETS; i++) {
        cum += m->apply_buckets[i];
        sb_printf(b, "fieldsync_batch_apply_seconds_bucket{le=\"%g\"} %llu\n", apply_bounds[i],
                  (unsigned long long)cum);
    }
    cum += m->apply_buckets[METRICS_APPLY_BUCKETS];
    sb_printf(b,
              "fieldsync_batch_apply_seconds_bucket{le=\"+Inf\"} %llu\n"
              "fieldsync_batch_apply_seconds_sum %.6f\n"
              "fieldsync_batch_apply_seconds_count %llu\n",
              (unsigned long long)cum, m->apply_seconds_sum, (unsigned long long)m->batches);
    sb_printf(b, "# HELP fieldsync_bytes_total WebSocket payload bytes, by direction.\n"
                 "# TYPE fieldsync_bytes_total counter\n"
                 "fieldsync_bytes_total{direction=\"in\"} %llu\n"
                 "fieldsync_bytes_total{direction=\"out\"} %llu\n",
              (unsigned long long)m->bytes_in, (unsigned long long)m->bytes_out);
    sb_printf(b, "# HELP fieldsync_messages_total Protocol messages, by direction.\n"
                 "# TYPE fieldsync_messages_total counter\n"
                 "fieldsync_messages_total{direction=\"in\"} %llu\n"
                 "fieldsync_messages_total{direction=\"out\"} %llu\n",
              (unsigned long long)m->messages_in, (unsigned long long)m->messages_out);
    sb_printf(b, "# HELP fieldsync_errors_sent_total Protocol errors sent, by code name.\n"
                 "# TYPE fieldsync_errors_sent_total counter\n");
    for (int i = 1; i < 16; i++)
        if (m->errors_sent[i])
            sb_printf(b, "fieldsync_errors_sent_total{code=\"%s\"} %llu\n", wire_err_name(i),
                      (unsigned long long)m->errors_sent[i]);
    sb_printf(b, "# HELP fieldsync_pulls_total Pull requests answered.\n"
                 "# TYPE fieldsync_pulls_total counter\nfieldsync_pulls_total %llu\n"
                 "# HELP fieldsync_changes_sent_total Changes sent in answers to pulls.\n"
                 "# TYPE fieldsync_changes_sent_total counter\nfieldsync_changes_sent_total %llu\n"
                 "# HELP fieldsync_ledger_events_total Ledger events queued to subscribers.\n"
                 "# TYPE fieldsync_ledger_events_total counter\n"
                 "fieldsync_ledger_events_total %llu\n",
              (unsigned long long)m->pulls, (unsigned long long)m->changes_sent,
              (unsigned long long)m->ledger_events);
    /* SQLite's page pool: a pool too small for the caches shows as overflow bytes */
    sqlite3_int64 pool_used = 0, overflow = 0, hi = 0;
    sqlite3_status64(SQLITE_STATUS_PAGECACHE_USED, &pool_used, &hi, 0);
    sqlite3_status64(SQLITE_STATUS_PAGECACHE_OVERFLOW, &overflow, &hi, 0);
    sb_printf(b,
              "# HELP fieldsync_page_pool_slots SQLite's page pool (huge-page memory for the "
              "cached pages of every connection): its slots, and those holding a page.\n"
              "# TYPE fieldsync_page_pool_slots gauge\n"
              "fieldsync_page_pool_slots{state=\"total\"} %u\n"
              "fieldsync_page_pool_slots{state=\"used\"} %lld\n"
              "# HELP fieldsync_page_cache_overflow_bytes Cached pages beyond the page pool "
              "(from malloc).\n"
              "# TYPE fieldsync_page_cache_overflow_bytes gauge\n"
              "fieldsync_page_cache_overflow_bytes %lld\n",
              server_page_pool_slots(), (long long)pool_used, (long long)overflow);
    uint64_t log_end = 0;
    store_last_seq(srv->store, &log_end);
    int64_t open_items = 0;
    store_review_count(srv->store, true, &open_items);
    sb_printf(b,
              "# HELP fieldsync_store_bytes Size of the store on disk (database and WAL).\n"
              "# TYPE fieldsync_store_bytes gauge\nfieldsync_store_bytes %lld\n"
              "# HELP fieldsync_log_sequence Last sequence of the change log.\n"
              "# TYPE fieldsync_log_sequence gauge\nfieldsync_log_sequence %llu\n"
              "# HELP fieldsync_review_items_open Review items waiting for a supervisor.\n"
              "# TYPE fieldsync_review_items_open gauge\nfieldsync_review_items_open %lld\n",
              (long long)(file_size(srv->cfg.db_path, "") + file_size(srv->cfg.db_path, "-wal")),
              (unsigned long long)log_end, (long long)open_items);
}
