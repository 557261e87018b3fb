/* guard_state.h (internal) — per-log breaker and throttle state, the
 * functions the log's append path calls, and the audit writer
 * (src/table/guard_state.c, src/table/record.c). */
#ifndef CAIRN_INTERNAL_GUARD_STATE_H
#define CAIRN_INTERNAL_GUARD_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "cairn/log.h"
#include "cairn/table.h"
#include "internal/table.h"

typedef struct cairn__guard {
    cairn_log_t *log;
    int enhanced;         /* 0: every state update under mu (the twin) */
    int throttle_on;      /* stream_rate > 0 */
    uint64_t (*clock_ns)(void *ctx); /* NULL: the system clock */
    void *clock_ctx;
    uint64_t base_ns;     /* clock at open: every stored time is relative */
    /* breaker, in breaker ticks (2^24 ns) */
    uint32_t threshold;   /* 0: failures never open it */
    uint64_t window_ticks;
    uint64_t recovery_ticks;
    uint32_t probes;      /* half_open_max_requests */
    uint32_t probes_to_close; /* ceil(success_threshold x probes) */
    /* throttle */
    uint64_t interval_ns; /* T = 10^9 / rate */
    uint64_t tolerance_ns; /* tau = T x burst */
    uint32_t rate, burst;
    uint64_t idle_ns;     /* 0: never evict */
    /* audit */
    _Atomic uint64_t audit_tat; /* the global audit bucket (GCRA) */
    _Atomic uint64_t audit_written;
    _Atomic uint64_t audit_suppressed;     /* total */
    _Atomic uint64_t audit_suppressed_new; /* not yet reported in $audit */
    /* transitions, counted whether or not their audit event was written:
     * breaker opened / half-opened / closed, throttle episodes started */
    _Atomic uint64_t breaker_opened, breaker_half_opened, breaker_closed;
    _Atomic uint64_t throttle_started;
    pthread_mutex_t mu;   /* the twin's lock */
} cairn__guard_t;

/* Open / close a log's guard from log->o (log->table must be open).
 * CAIRN_EBAD_OPTION for an out-of-range [breaker]/[throttle]/
 * idle_evict_secs value.  NULL is a no-op for close. */
int cairn__guard_open(cairn_log_t *log, cairn__guard_t **out);
void cairn__guard_close(cairn__guard_t *g);
/* Install the eviction policy and the re-derive hook in the log's table:
 * call once the log is fully open (recovery inserts streams without them,
 * since re-deriving needs a readable log). */
void cairn__guard_start(cairn__guard_t *g);

/* Monotonic guard clock (the injected one, or CLOCK_MONOTONIC). */
static inline uint64_t cairn__guard_now(const cairn__guard_t *g)
{
    if (g->clock_ns)
        return g->clock_ns(g->clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The cheap clock for activity stamps (CLOCK_MONOTONIC_COARSE: same epoch,
 * a few ms resolution, a few ns to read). */
static inline uint64_t cairn__guard_now_coarse(const cairn__guard_t *g)
{
    if (g->clock_ns)
        return g->clock_ns(g->clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int cairn__guard_admit_slow(cairn__guard_t *g, cairn__stream_t *s,
                            const char *stream, size_t stream_len, size_t n,
                            cairn_append_result_t *res);

/*
 * Admit n events to stream s before the log takes it: returns 0 (and sets
 * res->breaker_epoch), CAIRN_EBREAKER_OPEN or CAIRN_ETHROTTLED (with
 * res->retry_after_ns), or CAIRN_ETHROTTLE_BATCH.  Reserved ('$') streams
 * pass unguarded.  With the breaker closed and the throttle off this is one
 * relaxed load, a coarse clock read and (every few ms) a relaxed store.
 * The caller is inside a table section.
 */
static inline int cairn__guard_admit(cairn__guard_t *g, cairn__stream_t *s,
                                     const char *stream, size_t stream_len,
                                     size_t n, cairn_append_result_t *res)
{
    if (stream[0] == '$')
        return 0;
    /* Relaxed: the breaker word carries its whole meaning; nothing else is
     * published through it. */
    uint64_t b = atomic_load_explicit(&s->breaker, memory_order_relaxed);
    if ((b & CAIRN_BREAKER_STATE_MASK) == 0 && !g->throttle_on) {
        res->breaker_epoch = (uint32_t)(b >> CAIRN_BREAKER_EPOCH_SHIFT);
        /* Idleness is judged in seconds: store only when the coarse clock
         * moved, so appenders to one stream do not bounce the line for it. */
        uint64_t now = cairn__guard_now_coarse(g);
        if (atomic_load_explicit(&s->last_active_ns, memory_order_relaxed) !=
            now)
            atomic_store_explicit(&s->last_active_ns, now,
                                  memory_order_relaxed);
        return 0;
    }
    return cairn__guard_admit_slow(g, s, stream, stream_len, n, res);
}

/* Apply an outcome reported under epoch to s (counted in successes /
 * failures either way).  0 applied, CAIRN_ESTALE_OUTCOME. */
int cairn__guard_outcome(cairn__guard_t *g, cairn__stream_t *s,
                         const char *stream, size_t stream_len, uint32_t epoch,
                         cairn_outcome_t outcome);

/* Undo a half-open probe admitted under epoch whose append then failed. */
void cairn__guard_unadmit(cairn__guard_t *g, cairn__stream_t *s,
                          uint32_t epoch);

/* Force the breaker (admin); audited. */
void cairn__guard_set_breaker(cairn__guard_t *g, cairn__stream_t *s,
                              const char *stream, size_t stream_len,
                              cairn_breaker_state_t state);

/* Fill the guard part of a stream's state as of now. */
void cairn__guard_read(cairn__guard_t *g, cairn__stream_t *s,
                       cairn_stream_state_t *out);

/* 1 when one event now would be throttled (*retry_after_ns set), else 0. */
int cairn__guard_throttled(cairn__guard_t *g, cairn__stream_t *s,
                           uint64_t *retry_after_ns);

/*
 * Append one audit event to $audit: type is "breaker.opened" etc.; fields
 * is the JSON members after "stream" and "what" (without braces, may be
 * empty).  Rate-limited per log (CAIRN_AUDIT_RATE/BURST); what the limit
 * drops is counted and reported by the next event written.  Never fails
 * the caller.
 */
void cairn__audit(cairn__guard_t *g, const char *what, const char *stream,
                  size_t stream_len, const char *fields);

/* Audit a payload-guard rejection of an append to stream (for src/guard). */
void cairn__audit_guard_rejected(cairn_log_t *log, const char *stream,
                                 size_t stream_len, int code);

#endif
