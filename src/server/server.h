/* server.h — `cairn serve`: the HTTP server's shared state. */
#ifndef CAIRN_SERVER_H
#define CAIRN_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "cairn/bus.h"
#include "cairn/guard.h"
#include "cairn/log.h"
#include "cairn/metrics.h"
#include "server/config.h"

/* CAIRN_EGUARD_* codes are -1200 .. -1200-(CAIRN__GUARD_CAUSES-1). */
#define CAIRN__GUARD_CAUSES 32

/* Routes, for metrics labels and auth. */
typedef enum route {
    ROUTE_APPEND,
    ROUTE_EVENTS,
    ROUTE_STREAM_EVENTS,
    ROUTE_STREAM,
    ROUTE_STREAM_STATE,
    ROUTE_BREAKER,
    ROUTE_SUBSCRIBE,
    ROUTE_METRICS,
    ROUTE_METRICS_JSON,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_NOT_FOUND,
    ROUTE_COUNT
} route_t;

typedef struct server {
    cairn_config_t *cfg;
    cairn_log_t *log;               /* NULL until recovery finishes */
    cairn_guard_t *guard;           /* per-event payload checks */
    cairn_guard_t *body_guard;      /* whole request bodies (decode) */
    cairn_metrics_t *metrics;
    cairn_bus_t *bus;               /* SSE subscriptions */
    struct cairn_projections *projections; /* derived state (api_state.c) */
    struct MHD_Daemon *daemon;
    _Atomic int ready;              /* recovered and writable */
    _Atomic int stopping;           /* SIGTERM/SIGINT seen */
    pthread_rwlock_t auth_lock;     /* tokens swapped on SIGHUP */
    struct srv_token {
        unsigned char digest[32];   /* BLAKE2b of the secret */
        int role;
    } *tokens;                      /* the live token set (own copy) */
    unsigned ntokens;
    unsigned char client_key[16];   /* SipHash key for client buckets */
    int loopback;                   /* bound to a loopback address */

    /* per-client GCRA (client_rate): theoretical arrival times by address
     * hash, a small fixed table */
    _Atomic uint64_t *client_tat;
    uint32_t client_slots;

    /* metrics children, looked up once */
    cairn_metrics_counter_t *http_requests[ROUTE_COUNT][6]; /* by class */
    cairn_metrics_histogram_t *http_latency[ROUTE_COUNT];
    cairn_metrics_counter_t *appends_ok, *appends_failed, *bytes_appended;
    cairn_metrics_counter_t *events_appended;
    cairn_metrics_counter_t *throttled, *breaker_rejected;
    cairn_metrics_counter_t *guard_rejected[CAIRN__GUARD_CAUSES];
    cairn_metrics_gauge_t *ring_next_seq, *durable_lag, *written_lag;
    cairn_metrics_gauge_t *segments, *disk_bytes, *fsyncs, *read_only;
    cairn_metrics_gauge_t *streams, *sse_clients, *ring_bytes, *ring_cap;
    cairn_metrics_gauge_t *audit_written, *audit_suppressed, *evictions;
    cairn_metrics_counter_t *transitions[4]; /* opened, half_opened,
                                                closed, throttle started */
    uint64_t transitions_seen[4];            /* under collect_lock */
    pthread_mutex_t collect_lock;
} server_t;

/* Start the HTTP daemon on cfg->listen (before recovery, so /healthz and
 * /readyz answer while it runs).  0, or -errno with err filled. */
int cairn__http_start(server_t *s, char *err, size_t errlen);
/* Stop accepting, let in-flight requests finish, end SSE streams. */
void cairn__http_stop(server_t *s);

/* Count a guard rejection by its cause. */
static inline void cairn__count_guard(server_t *s, int code)
{
    int i = -1200 - code;
    if (i >= 0 && i < CAIRN__GUARD_CAUSES && s->guard_rejected[i])
        cairn_metrics_counter_inc(s->guard_rejected[i]);
}

/* Register the server's metrics.  0 or a negative code. */
int cairn__server_metrics(server_t *s);
/* Refresh the gauges read from the engine (called before each scrape). */
void cairn__server_collect(server_t *s);

/* Built-in projections for GET /v1/streams/{s}/state (api_state.c). */
int cairn__projections_open(server_t *s);
void cairn__projections_close(server_t *s);

int cairn_cmd_serve(int argc, char **argv);

#endif
