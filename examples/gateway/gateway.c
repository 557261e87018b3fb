/*
 * gateway.c — a security-gateway recorder: replays a request log through
 * cairn and prints what it blocked and why.
 *
 *   gateway [--requests FILE] [--rate N] [--burst N] [--failures N]
 *
 * Every request becomes an event on the stream "<endpoint>:<client>"
 * (auth:client-17, tools/call:client-17).  Before it is recorded, its body
 * goes through the payload guards (include/cairn/guard.h): compression
 * bombs, deep JSON and attack patterns are rejected, and the rejection is
 * itself recorded.  Recording goes through the stream table
 * (include/cairn/table.h): a per-stream GCRA throttle refuses floods, and
 * a circuit breaker opens on endpoints that keep failing (a 5xx or a 401
 * is a failure).  The table writes every breaker transition and
 * throttling episode to the audit stream "$audit"; a bus handler
 * (include/cairn/bus.h) prints them as they commit, and the built-in
 * "counts" projection (include/cairn/projection.h) gives the per-stream
 * summary, checked against the gateway's own tally ("verify").
 *
 * Time is the request log's: the log's guard clock is driven by the
 * replay, so throttling and breaker timeouts are deterministic.
 *
 * Request log lines: t_ms,client,endpoint,status,body
 * where body is JSON text, or @gzip-bomb (a small gzip that inflates to
 * 64 MiB of zeroes) or @deep-json (300 nested arrays), generated here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "cairn/bus.h"
#include "cairn/guard.h"
#include "cairn/log.h"
#include "cairn/projection.h"
#include "cairn/table.h"

#define MAX_STREAMS 64

typedef struct tally {
    char stream[128];
    uint64_t recorded;   /* events the gateway appended to this stream */
    uint64_t guard;      /* blocked by a payload guard */
    uint64_t throttled;  /* blocked by the throttle */
    uint64_t breaker;    /* blocked by the open breaker */
} tally_t;

static uint64_t sim_now_ns;

static uint64_t sim_clock(void *ctx)
{
    (void)ctx;
    return sim_now_ns;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "gateway: %s: %s\n", what,
            rc < 0 && rc > -4096 ? strerror(-rc) : cairn_strerror(rc));
    exit(1);
}

static tally_t *tally_for(tally_t *t, size_t *n, const char *stream)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(t[i].stream, stream) == 0)
            return &t[i];
    if (*n == MAX_STREAMS)
        die("too many streams in the request log", -ENOSPC);
    memset(&t[*n], 0, sizeof t[*n]);
    snprintf(t[*n].stream, sizeof t[*n].stream, "%s", stream);
    return &t[(*n)++];
}

/* Audit events, printed as the bus dispatches them. */
static void on_audit(void *ctx, const cairn_event_t *ev)
{
    uint64_t *n = ctx;
    (*n)++;
    printf("audit: %.*s %.*s\n", (int)ev->type_len, ev->type,
           (int)ev->payload_len, (const char *)ev->payload);
}

/* A gzip member of 64 MiB of zeroes: about 64 KiB compressed. */
static unsigned char *gzip_bomb(size_t *len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        die("deflateInit2", -ENOMEM);
    size_t cap = 256 << 10;
    unsigned char *out = malloc(cap);
    static unsigned char zeroes[1 << 16];
    if (!out)
        die("gzip bomb", -ENOMEM);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    for (int i = 0; i < 1024; i++) {
        z.next_in = zeroes;
        z.avail_in = sizeof zeroes;
        if (deflate(&z, i == 1023 ? Z_FINISH : Z_NO_FLUSH) == Z_STREAM_ERROR)
            die("deflate", -EIO);
    }
    *len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

static char *deep_json(size_t *len)
{
    const int depth = 300;
    char *s = malloc(2 * (size_t)depth + 1);
    if (!s)
        die("deep json", -ENOMEM);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    s[2 * depth] = 0;
    *len = 2 * (size_t)depth;
    return s;
}

static void usage(void)
{
    fprintf(stderr, "usage: gateway [--requests FILE] [--rate N] "
                    "[--burst N] [--failures N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *path = "sample_requests.csv";
    uint32_t rate = 5, burst = 3, failures = 3;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--requests") == 0)
            path = argv[++i];
        else if (strcmp(argv[i], "--rate") == 0)
            rate = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--burst") == 0)
            burst = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--failures") == 0)
            failures = (uint32_t)strtoul(argv[++i], NULL, 10);
        else
            usage();
    }
    FILE *in = fopen(path, "r");
    if (!in)
        die(path, -errno);

    cairn_log_opts_t lo;
    cairn_log_opts_init(&lo);
    lo.buffer_size_mb = 8;
    lo.throttle.stream_rate = rate;
    lo.throttle.stream_burst = burst;
    lo.breaker.failure_threshold = failures;
    lo.breaker.failure_window_secs = 60;
    lo.breaker.recovery_timeout_secs = 5;
    lo.breaker.half_open_max_requests = 1;
    lo.breaker.success_threshold = 1.0;
    lo.clock_ns = sim_clock;
    sim_now_ns = 1000000000u;
    cairn_log_t *log;
    int rc = cairn_log_open(&lo, &log);
    if (rc)
        die("cairn_log_open", rc);
    cairn_bus_t *bus;
    if ((rc = cairn_bus_create(log, NULL, &bus)))
        die("cairn_bus_create", rc);
    uint64_t audits = 0;
    cairn_read_filter_t af = {.stream = "$audit", .stream_len = 6};
    int hid;
    if ((rc = cairn_bus_add_handler(bus, &af, on_audit, &audits, &hid)))
        die("cairn_bus_add_handler", rc);
    cairn_projection_t *counts;
    if ((rc = cairn_projection_create_builtin(bus, "counts", NULL, NULL, NULL,
                                              &counts)))
        die("counts projection", rc);
    cairn_guard_opts_t go;
    cairn_guard_opts_init(&go);
    cairn_guard_t *guard;
    char err[256];
    if ((rc = cairn_guard_open(&go, &guard, err, sizeof err))) {
        fprintf(stderr, "gateway: guard: %s\n", err);
        return 1;
    }
    cairn_guard_result_t gr = CAIRN_GUARD_RESULT_INIT;
    cairn_guard_result_init(&gr);

    static tally_t tally[MAX_STREAMS];
    size_t ntally = 0;
    uint64_t requests = 0, blocked = 0;
    char line[8192];
    unsigned lineno = 0;
    while (fgets(line, sizeof line, in)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#')
            continue;
        char *f[4], *p = line;
        for (int k = 0; k < 4; k++) {
            f[k] = p;
            p = strchr(p, ',');
            if (!p) {
                fprintf(stderr, "gateway: %s:%u: expected 5 fields\n", path,
                        lineno);
                return 1;
            }
            *p++ = 0;
        }
        const char *client = f[1], *endpoint = f[2], *body = p;
        int status = atoi(f[3]);
        sim_now_ns = 1000000000u + strtoull(f[0], NULL, 10) * 1000000u;
        char stream[128];
        snprintf(stream, sizeof stream, "%s:%s", endpoint, client);
        tally_t *t = tally_for(tally, &ntally, stream);
        requests++;

        size_t blen = strlen(body);
        void *gen = NULL;
        if (strcmp(body, "@gzip-bomb") == 0)
            body = gen = gzip_bomb(&blen);
        else if (strcmp(body, "@deep-json") == 0)
            body = gen = deep_json(&blen);
        rc = cairn_guard_check(guard, "request", 7, body, blen,
                               CAIRN_GUARD_ENC_AUTO, CAIRN_GUARD_CONTENT_JSON,
                               &gr);
        cairn_record_result_t rr;
        char why[512];
        if (rc) {
            cairn_guard_result_format(&gr, why, sizeof why);
            printf("BLOCKED %-24s guard: %s (%s)\n", stream, why,
                   cairn_err_name(rc));
            t->guard++;
            blocked++;
            /* The rejection is an event of the stream too. */
            char ev_body[600];
            int n = snprintf(ev_body, sizeof ev_body, "{\"code\":\"%s\"}",
                             cairn_err_name(rc));
            cairn_event_in_t ev = {.type = "request.rejected", .type_len = 16,
                                   .payload = ev_body,
                                   .payload_len = (size_t)n,
                                   .flags = CAIRN_EVENT_JSON};
            if (cairn_table_record(log, stream, strlen(stream), &ev,
                                   CAIRN_OUTCOME_NONE, &rr) == 0)
                t->recorded++;
            free(gen);
            continue;
        }
        cairn_outcome_t outcome = status >= 500 || status == 401
                                      ? CAIRN_OUTCOME_FAILURE
                                      : CAIRN_OUTCOME_SUCCESS;
        cairn_event_in_t ev = {.type = outcome == CAIRN_OUTCOME_SUCCESS
                                           ? "request.ok"
                                           : "request.failed",
                               .payload = gr.payload,
                               .payload_len = gr.payload_len,
                               .flags = CAIRN_EVENT_JSON};
        ev.type_len = strlen(ev.type);
        rc = cairn_table_record(log, stream, strlen(stream), &ev, outcome, &rr);
        free(gen);
        if (rc == 0) {
            t->recorded++;
        } else if (rc == CAIRN_ETHROTTLED) {
            printf("BLOCKED %-24s throttled: over %u/s (burst %u), retry in "
                   "%.3f s\n",
                   stream, rate, burst, (double)rr.retry_after_ns / 1e9);
            t->throttled++;
            blocked++;
        } else if (rc == CAIRN_EBREAKER_OPEN) {
            printf("BLOCKED %-24s breaker open: %u failures, half-open in "
                   "%.3f s\n",
                   stream, failures, (double)rr.retry_after_ns / 1e9);
            t->breaker++;
            blocked++;
        } else {
            die("cairn_table_record", rc);
        }
    }
    fclose(in);
    cairn_bus_flush(bus);

    printf("\n%-26s %8s %8s %8s %8s %8s  %s\n", "stream", "recorded", "ok",
           "failed", "guard", "throttle", "breaker");
    int mismatches = 0;
    for (size_t i = 0; i < ntally; i++) {
        tally_t *t = &tally[i];
        cairn_stream_state_t st;
        const char *br = "-";
        if (cairn_table_get_state(log, t->stream, strlen(t->stream), &st) == 0)
            br = st.breaker == CAIRN_BREAKER_OPEN        ? "open"
                 : st.breaker == CAIRN_BREAKER_HALF_OPEN ? "half-open"
                                                         : "closed";
        char *json = NULL;
        size_t jl;
        uint64_t ok = 0, failed = 0, total = 0;
        rc = cairn_projection_get_json(counts, t->stream, strlen(t->stream), 0,
                                       0, &json, &jl, NULL);
        if (rc == 0) {
            const char *q;
            if ((q = strstr(json, "\"total\":")))
                total = strtoull(q + 8, NULL, 10);
            if ((q = strstr(json, "\"request.ok\":")))
                ok = strtoull(q + 13, NULL, 10);
            if ((q = strstr(json, "\"request.failed\":")))
                failed = strtoull(q + 17, NULL, 10);
            free(json);
        }
        if (total != t->recorded)
            mismatches++;
        printf("%-26s %8llu %8llu %8llu %8llu %8llu  %s (%llu refused)\n",
               t->stream, (unsigned long long)total, (unsigned long long)ok,
               (unsigned long long)failed, (unsigned long long)t->guard,
               (unsigned long long)t->throttled, br,
               (unsigned long long)t->breaker);
    }
    uint64_t written, suppressed;
    cairn_table_audit_counts(log, &written, &suppressed);
    printf("\nrequests %llu, blocked %llu, audit events %llu (%llu seen on the "
           "bus)\n",
           (unsigned long long)requests, (unsigned long long)blocked,
           (unsigned long long)written, (unsigned long long)audits);
    if (audits != written)
        mismatches++;
    if (mismatches)
        printf("verify: FAILED (%d mismatches)\n", mismatches);
    else
        printf("verify: ok (counts projection agrees with %zu streams, audit "
               "trail complete)\n",
               ntally);
    cairn_guard_result_free(&gr);
    cairn_guard_close(guard);
    cairn_bus_close(bus);
    cairn_log_close(log);
    return mismatches ? 1 : 0;
}
