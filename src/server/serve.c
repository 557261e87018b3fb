/*
 * serve.c — `cairn serve`: configuration, the engine, the HTTP server,
 * signals.
 *
 * Order of start: configuration (errors name the key); the HTTP listener,
 * so /healthz answers and /readyz says "recovering" while the log is
 * recovered; the log (recovery), the bus; then ready.  SIGTERM and SIGINT
 * stop accepting, end subscription streams, let in-flight requests
 * finish, sync the log and exit 0.  SIGHUP reloads the guard patterns and
 * the [auth] tokens from the configuration file.
 *
 * Signals are blocked in every thread (the mask is set before any thread
 * starts) and taken synchronously by the main thread with sigwait.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cairn/fsm.h"
#include "cairn/table.h"
#include "cli/cli.h"
#include "server/http.h"
#include "server/server.h"

static void serve_usage(FILE *f)
{
    fprintf(f, "usage: cairn serve [--config FILE] [--data DIR] "
               "[--listen HOST:PORT] [--insecure] [--SECTION.KEY VALUE ...]\n"
               "  Runs the server (defaults: ./cairn-data, 127.0.0.1:7070) and "
               "prints its URL when ready.\n"
               "  Every configuration key is also a flag (--storage.durability "
               "os) and an\n"
               "  environment variable (CAIRN_STORAGE_DURABILITY); see "
               "docs/CONFIG.md.\n"
               "  SIGTERM/SIGINT drain and exit 0; SIGHUP reloads patterns and "
               "tokens.\n");
}

/* ---- metrics ------------------------------------------------------------- */

static const double latency_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                         0.005,  0.01,    0.025,  0.05,  0.1,
                                         0.25,   1.0,     2.5,    10.0};

int cairn__server_metrics(server_t *s)
{
    cairn_metrics_t *m = s->metrics;
    static const char *const route_label[] = {"route", "code"};
    cairn_metrics_desc_t d = {CAIRN_METRICS_COUNTER,
                              "cairn_http_requests_total",
                              "HTTP requests by route and status class",
                              route_label,
                              2,
                              NULL,
                              0};
    cairn_metrics_family_t *req, *lat, *app;
    int rc = cairn_metrics_register(m, &d, &req);
    if (rc < 0)
        return rc;
    static const char *const route_only[] = {"route"};
    cairn_metrics_desc_t dl = {CAIRN_METRICS_HISTOGRAM,
                               "cairn_http_request_duration_seconds",
                               "HTTP request latency by route",
                               route_only,
                               1,
                               latency_buckets,
                               sizeof latency_buckets /
                                   sizeof *latency_buckets};
    if ((rc = cairn_metrics_register(m, &dl, &lat)) < 0)
        return rc;
    static const char *const classes[] = {"",    "1xx", "2xx",
                                          "3xx", "4xx", "5xx"};
    for (int r = 0; r < ROUTE_COUNT; r++) {
        const char *rv[] = {cairn__route_name((route_t)r)};
        if ((rc = cairn_metrics_histogram_child(lat, rv, &s->http_latency[r])) <
            0)
            return rc;
        for (int c = 2; c <= 5; c++) {
            const char *v[] = {cairn__route_name((route_t)r), classes[c]};
            if ((rc = cairn_metrics_counter_child(req, v,
                                                  &s->http_requests[r][c])) < 0)
                return rc;
        }
    }
    static const char *const result_label[] = {"result"};
    cairn_metrics_desc_t da = {CAIRN_METRICS_COUNTER,
                               "cairn_appends_total",
                               "Append requests by result",
                               result_label,
                               1,
                               NULL,
                               0};
    if ((rc = cairn_metrics_register(m, &da, &app)) < 0)
        return rc;
    const char *ok[] = {"ok"}, *failed[] = {"failed"};
    if ((rc = cairn_metrics_counter_child(app, ok, &s->appends_ok)) < 0 ||
        (rc = cairn_metrics_counter_child(app, failed, &s->appends_failed)) < 0)
        return rc;
    struct {
        const char *name, *help;
        cairn_metrics_counter_t **c;
    } counters[] = {
        {"cairn_events_appended_total", "Events appended over HTTP",
         &s->events_appended},
        {"cairn_bytes_appended_total", "Request body bytes of appends",
         &s->bytes_appended},
        {"cairn_appends_throttled_total", "Appends refused by a throttle",
         &s->throttled},
        {"cairn_appends_breaker_rejected_total",
         "Appends refused by an open breaker", &s->breaker_rejected},
    };
    for (size_t i = 0; i < sizeof counters / sizeof *counters; i++)
        if ((rc = cairn_metrics_counter(m, counters[i].name, counters[i].help,
                                        counters[i].c)) < 0)
            return rc;
    /* Guard rejections by cause: one child per CAIRN_EGUARD_* code. */
    static const char *const cause_label[] = {"cause"};
    cairn_metrics_desc_t dg = {CAIRN_METRICS_COUNTER,
                               "cairn_guard_rejections_total",
                               "Requests refused by the payload guards, by "
                               "cause",
                               cause_label,
                               1,
                               NULL,
                               0};
    cairn_metrics_family_t *gfam;
    if ((rc = cairn_metrics_register(m, &dg, &gfam)) < 0)
        return rc;
    for (int i = 0; i < CAIRN__GUARD_CAUSES; i++) {
        const char *name = cairn_err_name(-1200 - i);
        if (strncmp(name, "CAIRN_EGUARD_", 13) != 0)
            continue; /* a number not (yet) used by the table */
        char cause[64];
        size_t k = 0;
        for (const char *c = name + 13; *c && k + 1 < sizeof cause; c++)
            cause[k++] = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        cause[k] = 0;
        const char *v[] = {cause};
        if ((rc = cairn_metrics_counter_child(gfam, v, &s->guard_rejected[i])) <
            0)
            return rc;
    }
    static const char *const to_label[] = {"to"};
    cairn_metrics_desc_t dt = {CAIRN_METRICS_COUNTER,
                               "cairn_breaker_transitions_total",
                               "Circuit breaker transitions, all streams",
                               to_label,
                               1,
                               NULL,
                               0};
    cairn_metrics_family_t *tfam;
    if ((rc = cairn_metrics_register(m, &dt, &tfam)) < 0)
        return rc;
    static const char *const tos[] = {"open", "half_open", "closed"};
    for (int i = 0; i < 3; i++) {
        const char *v[] = {tos[i]};
        if ((rc = cairn_metrics_counter_child(tfam, v, &s->transitions[i])) < 0)
            return rc;
    }
    if ((rc = cairn_metrics_counter(m, "cairn_throttle_episodes_total",
                                    "Throttling episodes begun, all streams",
                                    &s->transitions[3])) < 0)
        return rc;
    struct {
        const char *name, *help;
        cairn_metrics_gauge_t **g;
    } gauges[] = {
        {"cairn_log_next_seq", "The seq the next append gets",
         &s->ring_next_seq},
        {"cairn_log_durable_lag_events",
         "Events appended but not yet fdatasync'd", &s->durable_lag},
        {"cairn_log_written_lag_events",
         "Events appended but not yet written to a segment", &s->written_lag},
        {"cairn_log_segments", "Segment files", &s->segments},
        {"cairn_log_disk_bytes", "Bytes in segment files", &s->disk_bytes},
        {"cairn_log_fsyncs", "fdatasync calls since start", &s->fsyncs},
        {"cairn_log_read_only", "1 once a write or fsync failed",
         &s->read_only},
        {"cairn_sse_clients", "Open subscription streams", &s->sse_clients},
        {"cairn_streams", "Streams in the stream table", &s->streams},
        {"cairn_ring_bytes", "Ring bytes in use (claimed, not yet freed)",
         &s->ring_bytes},
        {"cairn_ring_capacity_bytes", "Ring size", &s->ring_cap},
        {"cairn_audit_events", "Audit events written since start",
         &s->audit_written},
        {"cairn_audit_suppressed",
         "Audit events dropped by the audit rate limit since start",
         &s->audit_suppressed},
        {"cairn_table_evictions", "Idle streams evicted since start",
         &s->evictions},
    };
    for (size_t i = 0; i < sizeof gauges / sizeof *gauges; i++)
        if ((rc = cairn_metrics_gauge(m, gauges[i].name, gauges[i].help,
                                      gauges[i].g)) < 0)
            return rc;
    return 0;
}

void cairn__server_collect(server_t *s)
{
    if (!atomic_load(&s->ready))
        return;
    cairn_log_health_t h;
    cairn_log_health(s->log, &h);
    cairn_metrics_gauge_set(s->ring_next_seq, (int64_t)h.next_seq);
    cairn_metrics_gauge_set(s->durable_lag,
                            (int64_t)(h.next_seq - h.durable_seq));
    cairn_metrics_gauge_set(s->written_lag,
                            (int64_t)(h.next_seq - h.written_seq));
    cairn_metrics_gauge_set(s->segments, h.segments);
    cairn_metrics_gauge_set(s->disk_bytes, (int64_t)h.disk_bytes);
    cairn_metrics_gauge_set(s->fsyncs, (int64_t)h.fsyncs);
    cairn_metrics_gauge_set(s->read_only, h.read_only);
    cairn_metrics_gauge_set(s->streams, h.streams);
    cairn_metrics_gauge_set(s->ring_bytes, (int64_t)h.ring_bytes);
    cairn_metrics_gauge_set(s->ring_cap, (int64_t)h.ring_capacity);
    uint64_t written, suppressed;
    cairn_table_audit_counts(s->log, &written, &suppressed);
    cairn_metrics_gauge_set(s->audit_written, (int64_t)written);
    cairn_metrics_gauge_set(s->audit_suppressed, (int64_t)suppressed);
    cairn_metrics_gauge_set(s->evictions,
                            (int64_t)cairn_table_evictions(s->log));
    /* The engine keeps running totals; the counters take the deltas. */
    cairn_table_transitions_t t;
    cairn_table_transitions(s->log, &t);
    const uint64_t now[4] = {t.breaker_opened, t.breaker_half_opened,
                             t.breaker_closed, t.throttle_started};
    pthread_mutex_lock(&s->collect_lock);
    for (int i = 0; i < 4; i++) {
        if (now[i] > s->transitions_seen[i])
            cairn_metrics_counter_add(s->transitions[i],
                                      now[i] - s->transitions_seen[i]);
        s->transitions_seen[i] = now[i];
    }
    pthread_mutex_unlock(&s->collect_lock);
}

/* ---- auth ------------------------------------------------------------------
 */

/* Swap in a new token set: digests and roles copied, so the
 * configuration that carried them may be freed. */
static int install_tokens(server_t *s, const cairn_config_t *cfg)
{
    struct srv_token *t = NULL;
    if (cfg->ntokens) {
        t = malloc(cfg->ntokens * sizeof *t);
        if (!t)
            return -ENOMEM;
        for (unsigned i = 0; i < cfg->ntokens; i++) {
            cairn__token_digest(cfg->tokens[i].secret,
                                cfg->tokens[i].secret_len, t[i].digest);
            t[i].role = (int)cfg->tokens[i].role;
        }
    }
    pthread_rwlock_wrlock(&s->auth_lock);
    struct srv_token *old = s->tokens;
    s->tokens = t;
    s->ntokens = cfg->ntokens;
    pthread_rwlock_unlock(&s->auth_lock);
    free(old);
    return 0;
}

/* ---- the command
 * -------------------------------------------------------------- */

int cairn_cmd_serve(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            serve_usage(stdout);
            return 0;
        }
    static cairn_config_t cfg, reload_cfg;
    char err[1024];
    int rc = cairn_config_load(argc, argv, &cfg, err, sizeof err);
    if (rc) {
        cairn_cli_error("serve", "%s", err);
        if (rc == CAIRN_CONFIG_USAGE)
            serve_usage(stderr);
        return rc;
    }
    if (sodium_init() < 0) {
        cairn_cli_error("serve", "libsodium cannot initialise");
        return 1;
    }
    /* Block the signals we handle before any thread starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    static server_t s;
    memset(&s, 0, sizeof s);
    s.cfg = &cfg;
    pthread_rwlock_init(&s.auth_lock, NULL);
    pthread_mutex_init(&s.collect_lock, NULL);
    randombytes_buf(s.client_key, sizeof s.client_key);
    s.client_slots = 1u << 16;
    s.client_tat = calloc(s.client_slots, sizeof *s.client_tat);
    int exit_code = 1;
    cairn_fsm_def_t *defs[CAIRN_CONFIG_FSMS_MAX] = {0};
    cairn_log_fsm_binding_t binds[CAIRN_CONFIG_FSMS_MAX];

    cairn_metrics_opts_t mo = {0};
    mo.provider = (cairn_metrics_provider_t)cfg.metrics_provider;
    mo.enhanced_mode = cfg.log.enhanced_mode;
    if (!s.client_tat || cairn_metrics_create(&mo, &s.metrics) < 0 ||
        cairn__server_metrics(&s) < 0) {
        cairn_cli_error("serve", "cannot set up metrics");
        goto out;
    }
    if (install_tokens(&s, &cfg) < 0)
        goto out;
    rc = cairn_guard_open(&cfg.guard, &s.guard, err, sizeof err);
    if (rc == 0) {
        /* Bodies are decoded under the same ratio and layer limits, with
         * absolute caps sized for a whole request. */
        cairn_guard_opts_t bo = cfg.guard;
        bo.max_input_bytes = cfg.max_body_bytes;
        if (bo.max_decompressed_bytes < cfg.max_body_bytes)
            bo.max_decompressed_bytes = cfg.max_body_bytes;
        bo.patterns_path = NULL;
        rc = cairn_guard_open(&bo, &s.body_guard, err, sizeof err);
    }
    if (rc < 0) {
        cairn_cli_error("serve", "guard: %s", err);
        goto out;
    }
    rc = cairn__http_start(&s, err, sizeof err);
    if (rc < 0) {
        cairn_cli_error("serve", "%s", err);
        goto out;
    }
    if (!cfg.ntokens && !s.loopback && !cfg.insecure) {
        cairn_cli_error("serve",
                        "refusing to listen on %s without [auth] tokens: "
                        "configure a token or pass --insecure",
                        cfg.listen);
        goto out;
    }
    if (!cfg.ntokens)
        fprintf(stderr, "cairn: serve: warning: no [auth] tokens: every "
                        "client on this host has full access\n");
    printf("cairn: listening on http://%s (recovering %s)\n", cfg.listen,
           cfg.log.data_dir ? cfg.log.data_dir : "memory");
    fflush(stdout);

    /* State machines bound to stream prefixes. */
    for (unsigned i = 0; i < cfg.nfsms; i++) {
        cairn_fsm_builder_t *b;
        cairn_fsm_error_t fe;
        rc = cairn_fsm_builder_open(&b);
        for (unsigned k = 0; rc == 0 && k < cfg.fsms[i].nlines; k++)
            rc = cairn_fsm_builder_add(b, cfg.fsms[i].lines[k].key,
                                       cfg.fsms[i].lines[k].value,
                                       cfg.fsms[i].lines[k].line, &fe);
        if (rc == 0)
            rc = cairn_fsm_builder_finish(b, &defs[i], &fe);
        cairn_fsm_builder_close(b);
        if (rc < 0) {
            cairn_cli_error("serve", "fsm.%s: %s", cfg.fsms[i].name,
                            fe.message);
            goto out;
        }
        binds[i] = (cairn_log_fsm_binding_t){
            cfg.fsms[i].streams, strlen(cfg.fsms[i].streams), defs[i]};
    }
    cfg.log.metrics = s.metrics;
    cfg.log.fsms = binds;
    cfg.log.nfsms = cfg.nfsms;
    cfg.log.error_detail = err;
    cfg.log.error_detail_len = sizeof err;
    err[0] = 0;
    rc = cairn_log_open(&cfg.log, &s.log);
    if (rc < 0) {
        cairn_cli_error("serve", "cannot open the log: %s%s%s",
                        cairn_strerror(rc), err[0] ? ": " : "", err);
        goto out;
    }
    cairn_bus_opts_t bo;
    cairn_bus_opts_init(&bo);
    bo.metrics = s.metrics;
    if ((rc = cairn_bus_create(s.log, &bo, &s.bus)) < 0 ||
        (rc = cairn__projections_open(&s)) < 0) {
        cairn_cli_error("serve", "cannot start: %s", cairn_strerror(rc));
        goto out;
    }
    atomic_store(&s.ready, 1);
    printf("cairn: ready: http://%s (next seq %llu)\n", cfg.listen,
           (unsigned long long)cairn_log_next_seq(s.log));
    fflush(stdout);

    for (;;) {
        int sig;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            /* Reload patterns and tokens from the configuration. */
            cairn_config_free(&reload_cfg);
            rc = cairn_config_load(argc, argv, &reload_cfg, err, sizeof err);
            if (rc) {
                fprintf(stderr,
                        "cairn: serve: reload: %s (kept the old "
                        "configuration)\n",
                        err);
                continue;
            }
            rc = reload_cfg.guard.patterns_path
                     ? cairn_guard_reload_patterns(
                           s.guard, reload_cfg.guard.patterns_path, err,
                           sizeof err)
                     : cairn_guard_reload_patterns_text(
                           s.guard, cairn_guard_default_patterns(),
                           strlen(cairn_guard_default_patterns()), "default",
                           err, sizeof err);
            if (rc < 0)
                fprintf(stderr, "cairn: serve: reload patterns: %s\n", err);
            install_tokens(&s, &reload_cfg);
            fprintf(stderr, "cairn: serve: reloaded patterns and %u tokens\n",
                    reload_cfg.ntokens);
            continue;
        }
        break; /* SIGTERM or SIGINT */
    }
    fprintf(stderr, "cairn: serve: stopping\n");
    exit_code = 0;
out:
    atomic_store(&s.stopping, 1);
    if (s.bus)
        cairn_bus_shutdown(s.bus); /* ends subscription streams */
    cairn__http_stop(&s);
    cairn__projections_close(&s);
    cairn_bus_close(s.bus);
    if (s.log) {
        if (cairn_log_sync(s.log) < 0) {
            cairn_cli_error("serve", "final sync failed: the log is "
                                     "read-only");
            exit_code = 1;
        }
        cairn_log_close(s.log);
    }
    for (unsigned i = 0; i < CAIRN_CONFIG_FSMS_MAX; i++)
        cairn_fsm_def_free(defs[i]);
    cairn_guard_close(s.guard);
    cairn_guard_close(s.body_guard);
    cairn_metrics_destroy(s.metrics);
    free(s.tokens);
    free(s.client_tat);
    cairn_config_free(&reload_cfg);
    cairn_config_free(&cfg);
    return exit_code;
}
