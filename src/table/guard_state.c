/*
 * guard_state.c — the circuit breaker and the GCRA throttle on a stream's
 * packed state words (layout: include/cairn/table.h), the eviction policy
 * and the re-derivation of a returning stream.
 *
 * DESIGN.  Every decision is a pure function of one word, the clock and
 * the input: new = f(old, now, input).  In enhanced mode it is applied by
 * a CAS loop on that word (a failed CAS reloads and decides again); in the
 * twin the same function runs under one mutex and stores.  The breaker
 * and the throttle are separate words, so an admission is two steps
 * (breaker, then throttle); if the throttle refuses an append that took a
 * half-open probe, the probe is handed back (same epoch only).  The words
 * publish nothing but themselves, so every access is relaxed.
 *
 * Breaker (docs/TABLE.md "Circuit breaker"):
 *   closed    a failure starts a window (or counts in the current one);
 *             failure_threshold failures within failure_window_secs open
 *             it.  Successes change nothing.
 *   open      admissions fail with CAIRN_EBREAKER_OPEN and the exact time
 *             until the breaker will turn half-open; the first admission
 *             after recovery_timeout_secs turns it half-open (lazily).
 *   half-open admits half_open_max_requests probes under the new epoch;
 *             ceil(success_threshold x probes) successes close it, any
 *             failure re-opens it, and recovery_timeout_secs without an
 *             outcome re-opens it.  Outcomes whose epoch is not current,
 *             or that find no probe outstanding, are ignored.
 *
 * Throttle (GCRA, integer ns since the log opened):
 *   T = 10^9 / stream_rate, tau = T x stream_burst.  A batch of n events
 *   at time now: tat' = max(tat, now) + n T; admitted iff tat' - tau <= now
 *   (then tat = tat'), else refused with retry_after = tat' - tau - now,
 *   exact: at now + retry_after the same batch passes, one ns earlier it
 *   does not.  Because the test is on the new TAT, tau = T x burst admits
 *   exactly `burst` events at once (the classic form tests the old TAT and
 *   needs tau = T x (burst - 1) for the same).
 */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/limits.h"
#include "internal/clock.h"
#include "internal/guard_state.h"
#include "log/log_internal.h"

#define TICK_SHIFT CAIRN_BREAKER_TIME_UNIT_SHIFT
#define TIME_MAX ((UINT64_C(1) << CAIRN_BREAKER_TIME_BITS) - 1)
#define EPOCH_MASK ((UINT32_C(1) << CAIRN_BREAKER_EPOCH_BITS) - 1)

#define B_ST(b) ((unsigned)((b)&CAIRN_BREAKER_STATE_MASK))
#define B_CNT(b) ((unsigned)(((b) >> CAIRN_BREAKER_COUNT_SHIFT) & 0xff))
#define B_TIME(b) (((b) >> CAIRN_BREAKER_TIME_SHIFT) & TIME_MAX)
#define B_EPOCH(b) ((uint32_t)((b) >> CAIRN_BREAKER_EPOCH_SHIFT))

static uint64_t b_make(unsigned st, unsigned cnt, uint64_t ticks,
                       uint32_t epoch)
{
    return (uint64_t)st | (uint64_t)cnt << CAIRN_BREAKER_COUNT_SHIFT |
           (ticks & TIME_MAX) << CAIRN_BREAKER_TIME_SHIFT |
           (uint64_t)(epoch & EPOCH_MASK) << CAIRN_BREAKER_EPOCH_SHIFT;
}

/* Times as seen by one decision. */
typedef struct now {
    uint64_t rel;        /* ns since the log opened */
    uint64_t ticks;      /* floor(rel / tick), saturated */
    uint64_t ticks_ceil; /* ceil(rel / tick), saturated */
} now_t;

static now_t now_of(const cairn__guard_t *g, uint64_t clock)
{
    now_t n;
    n.rel = clock > g->base_ns ? clock - g->base_ns : 0;
    n.ticks = n.rel >> TICK_SHIFT;
    n.ticks_ceil = (n.rel + (UINT64_C(1) << TICK_SHIFT) - 1) >> TICK_SHIFT;
    if (n.ticks > TIME_MAX)
        n.ticks = TIME_MAX;
    if (n.ticks_ceil > TIME_MAX)
        n.ticks_ceil = TIME_MAX;
    return n;
}

/* Ticks since `since`; a saturated clock reads every timer as expired. */
static uint64_t elapsed(const now_t *n, uint64_t since)
{
    if (n->ticks >= TIME_MAX)
        return UINT64_MAX;
    return n->ticks >= since ? n->ticks - since : 0;
}

/* ns from now until tick `at` (at least 1). */
static uint64_t ns_until(const now_t *n, uint64_t at)
{
    uint64_t t = at << TICK_SHIFT;
    return t > n->rel ? t - n->rel : 1;
}

static void lock(cairn__guard_t *g)
{
    if (!g->enhanced)
        pthread_mutex_lock(&g->mu);
}

static void unlock(cairn__guard_t *g)
{
    if (!g->enhanced)
        pthread_mutex_unlock(&g->mu);
}

/* Install next if *w still holds *old (enhanced: CAS, *old reloaded on
 * failure; twin: the mutex is held, so a store). */
static int commit(cairn__guard_t *g, _Atomic uint64_t *w, uint64_t *old,
                  uint64_t next)
{
    if (!g->enhanced) {
        atomic_store_explicit(w, next, memory_order_relaxed);
        return 1;
    }
    /* Relaxed: see DESIGN; the CAS only has to be atomic on this word. */
    return atomic_compare_exchange_weak_explicit(w, old, next,
                                                 memory_order_relaxed,
                                                 memory_order_relaxed);
}

/* An audit event decided under the lock, written after it. */
typedef struct effect {
    const char *what;
    char fields[192];
} effect_t;

static void emit(cairn__guard_t *g, const effect_t *e, const char *stream,
                 size_t len)
{
    if (e->what)
        cairn__audit(g, e->what, stream, len, e->fields);
}

static void breaker_transition_effect(cairn__guard_t *g, cairn__stream_t *s,
                                      effect_t *e, uint64_t next,
                                      const char *why, unsigned count)
{
    uint64_t rejected = atomic_exchange_explicit(&s->breaker_rejected_epoch,
                                                 0, memory_order_relaxed);
    uint32_t epoch = B_EPOCH(next);
    switch (B_ST(next)) {
    case CAIRN_BREAKER_OPEN:
        e->what = "breaker.opened";
        snprintf(e->fields, sizeof e->fields,
                 "\"why\":\"%s\",\"epoch\":%u,\"failures\":%u,"
                 "\"window_secs\":%llu,\"recovery_secs\":%llu",
                 why, epoch, count,
                 (unsigned long long)(g->window_ticks << TICK_SHIFT) /
                     1000000000u,
                 (unsigned long long)(g->recovery_ticks << TICK_SHIFT) /
                     1000000000u);
        break;
    case CAIRN_BREAKER_HALF_OPEN:
        e->what = "breaker.half_opened";
        snprintf(e->fields, sizeof e->fields,
                 "\"why\":\"%s\",\"epoch\":%u,\"rejected_while_open\":%llu,"
                 "\"probes\":%u",
                 why, epoch, (unsigned long long)rejected, g->probes);
        break;
    default:
        e->what = "breaker.closed";
        snprintf(e->fields, sizeof e->fields,
                 "\"why\":\"%s\",\"epoch\":%u,\"successes\":%u,"
                 "\"rejected\":%llu",
                 why, epoch, count, (unsigned long long)rejected);
        break;
    }
}

/* ---- admission ----------------------------------------------------------- */

int cairn__guard_admit_slow(cairn__guard_t *g, cairn__stream_t *s,
                            const char *stream, size_t stream_len, size_t n,
                            cairn_append_result_t *res)
{
    const now_t t = now_of(g, cairn__guard_now(g));
    effect_t eb, et; /* fields are written only when what is set */
    eb.what = et.what = NULL;
    int rc = 0, probe = 0;
    uint32_t epoch;
    uint64_t retry = 0;

    lock(g);
    uint64_t b = atomic_load_explicit(&s->breaker, memory_order_relaxed);
    for (;;) {
        uint64_t next = b;
        const char *why = NULL;
        rc = 0;
        probe = 0;
        eb.what = NULL;
        epoch = B_EPOCH(b);
        unsigned st = B_ST(b);
        if (st == CAIRN_BREAKER_OPEN) {
            if (elapsed(&t, B_TIME(b)) >= g->recovery_ticks) {
                epoch = (epoch + 1) & EPOCH_MASK;
                next = b_make(CAIRN_BREAKER_HALF_OPEN, 1, t.ticks, epoch);
                probe = 1;
                why = "recovery_timeout";
            } else {
                rc = CAIRN_EBREAKER_OPEN;
                retry = ns_until(&t, B_TIME(b) + g->recovery_ticks);
            }
        } else if (st == CAIRN_BREAKER_HALF_OPEN) {
            unsigned adm = B_CNT(b) & 0xf;
            if (elapsed(&t, B_TIME(b)) >= g->recovery_ticks) {
                /* No outcome within the recovery timeout: re-open. */
                next = b_make(CAIRN_BREAKER_OPEN, 0, t.ticks_ceil, epoch + 1);
                rc = CAIRN_EBREAKER_OPEN;
                retry = ns_until(&t, t.ticks_ceil + g->recovery_ticks);
                why = "half_open_timeout";
            } else if (adm < g->probes) {
                next = b + (UINT64_C(1) << CAIRN_BREAKER_COUNT_SHIFT);
                probe = 1;
            } else {
                rc = CAIRN_EBREAKER_OPEN; /* every probe is out */
                retry = ns_until(&t, B_TIME(b) + g->recovery_ticks);
            }
        }
        if (next == b || commit(g, &s->breaker, &b, next)) {
            if (why)
                breaker_transition_effect(g, s, &eb, next, why, 0);
            break;
        }
    }
    if (rc == CAIRN_EBREAKER_OPEN) {
        atomic_fetch_add_explicit(&s->breaker_rejected, 1,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&s->breaker_rejected_epoch, 1,
                                  memory_order_relaxed);
        res->retry_after_ns = retry;
        goto out;
    }

    if (g->throttle_on) {
        uint64_t cost = (uint64_t)n * g->interval_ns;
        if (cost > g->tolerance_ns) {
            rc = CAIRN_ETHROTTLE_BATCH;
        } else {
            uint64_t w = atomic_load_explicit(&s->throttle,
                                              memory_order_relaxed);
            for (;;) {
                uint64_t tat = w & CAIRN_THROTTLE_TAT_MASK, next;
                uint64_t new_tat = (tat > t.rel ? tat : t.rel) + cost;
                if (new_tat <= t.rel + g->tolerance_ns) {
                    rc = 0;
                    next = new_tat;
                } else {
                    rc = CAIRN_ETHROTTLED;
                    retry = new_tat - g->tolerance_ns - t.rel;
                    next = w | CAIRN_THROTTLE_EPISODE;
                }
                if (next == w || commit(g, &s->throttle, &w, next)) {
                    if (rc == 0 && (w & CAIRN_THROTTLE_EPISODE)) {
                        uint64_t k = atomic_exchange_explicit(
                            &s->throttled_episode, 0, memory_order_relaxed);
                        et.what = "throttle.ended";
                        snprintf(et.fields, sizeof et.fields,
                                 "\"why\":\"rate\",\"throttled\":%llu",
                                 (unsigned long long)k);
                    } else if (rc && !(w & CAIRN_THROTTLE_EPISODE)) {
                        et.what = "throttle.started";
                        snprintf(et.fields, sizeof et.fields,
                                 "\"why\":\"rate\",\"rate\":%u,\"burst\":%u,"
                                 "\"retry_after_ns\":%llu",
                                 g->rate, g->burst, (unsigned long long)retry);
                    }
                    break;
                }
            }
        }
        if (rc) {
            if (rc == CAIRN_ETHROTTLED) {
                atomic_fetch_add_explicit(&s->throttled, 1,
                                          memory_order_relaxed);
                atomic_fetch_add_explicit(&s->throttled_episode, 1,
                                          memory_order_relaxed);
                res->retry_after_ns = retry;
            }
            if (probe) {
                unlock(g);
                cairn__guard_unadmit(g, s, epoch);
                lock(g);
            }
            goto out;
        }
    }
    res->breaker_epoch = epoch;
    /* Idleness is judged in seconds: refresh the stamp once per ms at most,
     * so two threads on one stream do not bounce its line for it. */
    if (t.rel + g->base_ns - atomic_load_explicit(&s->last_active_ns,
                                                  memory_order_relaxed) >
        1000000u)
        atomic_store_explicit(&s->last_active_ns, t.rel + g->base_ns,
                              memory_order_relaxed);
out:
    unlock(g);
    emit(g, &eb, stream, stream_len);
    emit(g, &et, stream, stream_len);
    return rc;
}

void cairn__guard_unadmit(cairn__guard_t *g, cairn__stream_t *s,
                          uint32_t epoch)
{
    lock(g);
    uint64_t b = atomic_load_explicit(&s->breaker, memory_order_relaxed);
    for (;;) {
        unsigned adm = B_CNT(b) & 0xf, succ = B_CNT(b) >> 4;
        if (B_ST(b) != CAIRN_BREAKER_HALF_OPEN ||
            B_EPOCH(b) != (epoch & EPOCH_MASK) || adm <= succ)
            break;
        if (commit(g, &s->breaker, &b,
                   b - (UINT64_C(1) << CAIRN_BREAKER_COUNT_SHIFT)))
            break;
    }
    unlock(g);
}

/* ---- outcomes ------------------------------------------------------------ */

int cairn__guard_outcome(cairn__guard_t *g, cairn__stream_t *s,
                         const char *stream, size_t stream_len, uint32_t epoch,
                         cairn_outcome_t outcome)
{
    const int success = outcome == CAIRN_OUTCOME_SUCCESS;
    atomic_fetch_add_explicit(success ? &s->successes : &s->failures, 1,
                              memory_order_relaxed);
    uint64_t b = atomic_load_explicit(&s->breaker, memory_order_relaxed);
    /* The common case needs neither the clock nor a write: a success on a
     * closed breaker of the current epoch changes nothing.  (In the twin
     * the words change only under the lock, and this reads one word.) */
    if (success && B_ST(b) == CAIRN_BREAKER_CLOSED)
        return B_EPOCH(b) == (epoch & EPOCH_MASK) ? 0 : CAIRN_ESTALE_OUTCOME;
    const now_t t = now_of(g, cairn__guard_now(g));
    effect_t e;
    e.what = NULL;
    int rc;

    lock(g);
    b = atomic_load_explicit(&s->breaker, memory_order_relaxed);
    for (;;) {
        uint64_t next = b;
        const uint32_t cur = B_EPOCH(b);
        const char *why = NULL;
        unsigned count = 0;
        rc = 0;
        if (cur != (epoch & EPOCH_MASK) || B_ST(b) == CAIRN_BREAKER_OPEN) {
            rc = CAIRN_ESTALE_OUTCOME;
        } else if (B_ST(b) == CAIRN_BREAKER_CLOSED) {
            if (!success && g->threshold) {
                unsigned cnt = B_CNT(b);
                uint64_t start = B_TIME(b);
                if (cnt == 0 || elapsed(&t, start) >= g->window_ticks) {
                    cnt = 1;
                    start = t.ticks;
                } else {
                    cnt++;
                }
                if (cnt >= g->threshold) {
                    next = b_make(CAIRN_BREAKER_OPEN, 0, t.ticks_ceil,
                                  cur + 1);
                    why = "failure_threshold";
                    count = cnt;
                } else {
                    next = b_make(CAIRN_BREAKER_CLOSED, cnt, start, cur);
                }
            }
        } else { /* half-open */
            unsigned adm = B_CNT(b) & 0xf, succ = B_CNT(b) >> 4;
            if (elapsed(&t, B_TIME(b)) >= g->recovery_ticks) {
                next = b_make(CAIRN_BREAKER_OPEN, 0, t.ticks_ceil, cur + 1);
                why = "half_open_timeout";
                rc = CAIRN_ESTALE_OUTCOME;
            } else if (succ >= adm) {
                rc = CAIRN_ESTALE_OUTCOME; /* no probe outstanding */
            } else if (!success) {
                next = b_make(CAIRN_BREAKER_OPEN, 0, t.ticks_ceil, cur + 1);
                why = "probe_failed";
                count = 1;
            } else if (succ + 1 >= g->probes_to_close) {
                next = b_make(CAIRN_BREAKER_CLOSED, 0, 0, cur + 1);
                why = "probes_succeeded";
                count = succ + 1;
            } else {
                next = b_make(CAIRN_BREAKER_HALF_OPEN, adm | (succ + 1) << 4,
                              t.ticks, cur);
            }
        }
        if (next == b)
            break;
        if (commit(g, &s->breaker, &b, next)) {
            if (why)
                breaker_transition_effect(g, s, &e, next, why, count);
            break;
        }
    }
    unlock(g);
    emit(g, &e, stream, stream_len);
    return rc;
}

void cairn__guard_set_breaker(cairn__guard_t *g, cairn__stream_t *s,
                              const char *stream, size_t stream_len,
                              cairn_breaker_state_t state)
{
    const now_t t = now_of(g, cairn__guard_now(g));
    effect_t e;
    e.what = NULL;
    lock(g);
    uint64_t b = atomic_load_explicit(&s->breaker, memory_order_relaxed);
    uint64_t next;
    do {
        uint64_t ticks = state == CAIRN_BREAKER_OPEN        ? t.ticks_ceil
                         : state == CAIRN_BREAKER_HALF_OPEN ? t.ticks
                                                            : 0;
        next = b_make((unsigned)state, 0, ticks, B_EPOCH(b) + 1);
    } while (!commit(g, &s->breaker, &b, next));
    breaker_transition_effect(g, s, &e, next, "admin", 0);
    unlock(g);
    emit(g, &e, stream, stream_len);
}

/* ---- reads --------------------------------------------------------------- */

static int throttled_at(const cairn__guard_t *g, uint64_t w, const now_t *t,
                        uint64_t *retry)
{
    if (!g->throttle_on)
        return 0;
    uint64_t tat = w & CAIRN_THROTTLE_TAT_MASK;
    uint64_t new_tat = (tat > t->rel ? tat : t->rel) + g->interval_ns;
    if (new_tat <= t->rel + g->tolerance_ns)
        return 0;
    if (retry)
        *retry = new_tat - g->tolerance_ns - t->rel;
    return 1;
}

int cairn__guard_throttled(cairn__guard_t *g, cairn__stream_t *s,
                           uint64_t *retry_after_ns)
{
    const now_t t = now_of(g, cairn__guard_now(g));
    return throttled_at(
        g, atomic_load_explicit(&s->throttle, memory_order_relaxed), &t,
        retry_after_ns);
}

void cairn__guard_read(cairn__guard_t *g, cairn__stream_t *s,
                       cairn_stream_state_t *out)
{
    const now_t t = now_of(g, cairn__guard_now(g));
    lock(g); /* the twin's words change only under the lock */
    uint64_t b = atomic_load_explicit(&s->breaker, memory_order_relaxed);
    uint64_t w = atomic_load_explicit(&s->throttle, memory_order_relaxed);
    unlock(g);
    unsigned st = B_ST(b);
    out->breaker_epoch = B_EPOCH(b);
    out->retry_after_ns = 0;
    if (st == CAIRN_BREAKER_OPEN) {
        if (elapsed(&t, B_TIME(b)) >= g->recovery_ticks)
            st = CAIRN_BREAKER_HALF_OPEN;
        else
            out->retry_after_ns = ns_until(&t, B_TIME(b) + g->recovery_ticks);
    } else if (st == CAIRN_BREAKER_HALF_OPEN &&
               elapsed(&t, B_TIME(b)) >= g->recovery_ticks) {
        st = CAIRN_BREAKER_OPEN;
        out->retry_after_ns = ns_until(&t, t.ticks_ceil + g->recovery_ticks);
    }
    out->breaker = (cairn_breaker_state_t)st;
    uint64_t retry = 0;
    out->throttled_now = throttled_at(g, w, &t, &retry);
    if (out->throttled_now && retry > out->retry_after_ns)
        out->retry_after_ns = retry;
    out->successes = atomic_load_explicit(&s->successes, memory_order_relaxed);
    out->failures = atomic_load_explicit(&s->failures, memory_order_relaxed);
    out->throttled = atomic_load_explicit(&s->throttled, memory_order_relaxed);
    out->breaker_rejected =
        atomic_load_explicit(&s->breaker_rejected, memory_order_relaxed);
    out->last_event_ns =
        atomic_load_explicit(&s->last_active_ns, memory_order_relaxed);
}

/* ---- eviction policy ----------------------------------------------------- */

/* A stream may go when it is idle, not reserved, its breaker is closed with no failure
 * pending, it owes the throttle nothing and no append holds it: then its
 * guard state is exactly what a fresh slot starts with, and its version
 * comes back from the log. */
static int evict_ok(void *ctx, cairn__stream_t *s)
{
    cairn__guard_t *g = ctx;
    if (!g->idle_ns)
        return 0;
    /* cairn's own streams ($audit) stay: re-deriving them means scanning
     * the log, and they are written exactly when an attack churns names. */
    if (s->name_len && s->name[0] == '$')
        return 0;
    if (atomic_load_explicit(&s->state, memory_order_relaxed) &
        CAIRN_STATE_BUSY)
        return 0;
    uint64_t b = atomic_load_explicit(&s->breaker, memory_order_relaxed);
    if (B_ST(b) != CAIRN_BREAKER_CLOSED || B_CNT(b) != 0)
        return 0;
    const uint64_t now = cairn__guard_now(g);
    const now_t t = now_of(g, now);
    uint64_t w = atomic_load_explicit(&s->throttle, memory_order_relaxed);
    if ((w & CAIRN_THROTTLE_EPISODE) || (w & CAIRN_THROTTLE_TAT_MASK) > t.rel)
        return 0;
    uint64_t last =
        atomic_load_explicit(&s->last_active_ns, memory_order_relaxed);
    return now >= last && now - last >= g->idle_ns;
}

/* Version and seqs of a returning stream, from its events in the log.  The
 * scan runs to the head as it was when the scan began: every event of the
 * stream was claimed before that (the stream was not in the table since),
 * and a record claimed but not yet committed by another producer is waited
 * for rather than taken as the end. */
static int rederive(void *ctx, cairn__stream_t *s, uint64_t *version)
{
    cairn__guard_t *g = ctx;
    cairn_log_t *log = g->log;
    cairn_read_filter_t f;
    memset(&f, 0, sizeof f);
    f.stream = s->name;
    f.stream_len = s->name_len;
    const uint64_t target = cairn_log_next_seq(log);
    cairn_log_iter_t *it;
    int rc = cairn_log_iter_open(log, &f, &it);
    if (rc < 0)
        return rc;
    uint64_t v = 0, first = 0, last = 0;
    cairn_event_t ev;
    for (unsigned spins = 0;;) {
        rc = cairn_log_iter_next(it, &ev);
        if (rc < 0)
            break;
        if (rc == 1) {
            v = ev.version;
            last = ev.seq;
            if (!first)
                first = ev.seq;
            continue;
        }
        if (cairn_log_iter_position(it) >= target)
            break;
        if (++spins < 64)
            cairn__cpu_relax();
        else
            sched_yield();
    }
    cairn_log_iter_close(it);
    if (rc < 0)
        return rc;
    atomic_store_explicit(&s->first_seq, first, memory_order_relaxed);
    atomic_store_explicit(&s->last_seq, last, memory_order_relaxed);
    *version = v;
    return 0;
}

/* ---- open / close -------------------------------------------------------- */

int cairn__guard_open(cairn_log_t *log, cairn__guard_t **out)
{
    const cairn_log_opts_t *o = &log->o;
    const cairn_breaker_opts_t *bo = &o->breaker;
    const cairn_throttle_opts_t *to = &o->throttle;
    if (bo->failure_threshold > CAIRN_BREAKER_FAILURE_THRESHOLD_CAP ||
        bo->failure_window_secs < 1 ||
        bo->failure_window_secs > CAIRN_BREAKER_SECS_CAP ||
        bo->recovery_timeout_secs < 1 ||
        bo->recovery_timeout_secs > CAIRN_BREAKER_SECS_CAP ||
        bo->half_open_max_requests < 1 ||
        bo->half_open_max_requests > CAIRN_BREAKER_HALF_OPEN_MAX_CAP ||
        !(bo->success_threshold > 0.0 && bo->success_threshold <= 1.0) ||
        to->stream_rate > CAIRN_THROTTLE_RATE_CAP ||
        (to->stream_rate &&
         (to->stream_burst < 1 || to->stream_burst > CAIRN_THROTTLE_BURST_CAP)) ||
        o->idle_evict_secs > CAIRN_IDLE_EVICT_SECS_CAP)
        return CAIRN_EBAD_OPTION;
    cairn__guard_t *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->log = log;
    g->enhanced = o->enhanced_mode;
    g->clock_ns = o->clock_ns;
    g->clock_ctx = o->clock_ctx;
    g->base_ns = cairn__guard_now(g);
    const uint64_t tick = UINT64_C(1) << TICK_SHIFT;
    g->threshold = bo->failure_threshold;
    g->window_ticks =
        ((uint64_t)bo->failure_window_secs * 1000000000u + tick - 1) / tick;
    g->recovery_ticks =
        ((uint64_t)bo->recovery_timeout_secs * 1000000000u + tick - 1) / tick;
    g->probes = bo->half_open_max_requests;
    /* The smallest k with k / probes >= success_threshold (the epsilon
     * keeps 0.8 x 5 = 4.000000000000001 from asking for 5). */
    double need = ceil(bo->success_threshold * g->probes - 1e-9);
    g->probes_to_close = need < 1 ? 1 : need > g->probes ? g->probes
                                                          : (uint32_t)need;
    g->rate = to->stream_rate;
    g->burst = to->stream_burst;
    g->throttle_on = to->stream_rate > 0;
    if (g->throttle_on) {
        g->interval_ns = 1000000000u / to->stream_rate;
        g->tolerance_ns = g->interval_ns * to->stream_burst;
    }
    g->idle_ns = (uint64_t)o->idle_evict_secs * 1000000000u;
    pthread_mutex_init(&g->mu, NULL);
    *out = g;
    return 0;
}

void cairn__guard_start(cairn__guard_t *g)
{
    cairn_table_t *t = g->log->table;
    pthread_mutex_lock(&t->lock); /* the hooks are read under it */
    t->evict_ok = evict_ok;
    t->rederive = rederive;
    t->policy_ctx = g;
    pthread_mutex_unlock(&t->lock);
}

void cairn__guard_close(cairn__guard_t *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g);
}
