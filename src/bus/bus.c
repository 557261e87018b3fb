/*
 * bus.c — synchronous handlers on commit and asynchronous subscribers with
 * cursors (include/cairn/bus.h; docs/BUS.md).
 *
 * DESIGN
 *
 * Commit hook.  The bus installs one log commit hook.  It runs on the
 * appending thread after the append's records are committed and does two
 * things: dispatch to handlers (only when there are handlers) and wake
 * sleeping subscribers (only when some subscriber sleeps; otherwise the
 * cost is one load of `sleepers`).
 *
 * Dispatch.  Handlers see every event once, in seq order, from one log
 * iterator (the dispatcher) that only the holder of `disp_busy` uses.  A
 * hook sets `disp_pending`, then tries to take `disp_busy` with one
 * exchange.  The winner clears `disp_pending`, reads the dispatcher to the
 * committed tail, calling the handlers, releases `disp_busy`, and goes
 * round again if `disp_pending` was set meanwhile.  A loser returns at
 * once: all four operations are seq_cst, so in their single total order
 * either the loser's exchange follows the holder's release (the loser wins
 * the next round itself) or the holder's re-check of `disp_pending`
 * follows the loser's store (the holder does the loser's work).  No event
 * is left behind while appends continue; after CAIRN_BUS_DISPATCH_ROUNDS
 * rounds a holder stops (bounding its own append's latency) and leaves
 * `disp_pending` set for the next appender or the keeper thread, which
 * checks it every CAIRN_BUS_KEEPER_INTERVAL_MS.  An append whose record
 * is behind another producer's uncommitted record finds the tail short of
 * its own events; the producer that commits that record runs the hook
 * after it and dispatches them.
 *
 * Subscribers.  Each has its own log iterator, a cursor (the next seq it
 * examines) and a filter.  The iterator already moves from the segments
 * into the ring without gap or duplicate; the bus adds waiting, lag
 * reporting and pin management.  cairn_bus_next copies the event into the
 * subscriber's buffer before returning it, so the caller's event never
 * points into the ring and the bus may drop the iterator between calls.
 *
 * Waiting.  A caught-up subscriber sleeps on its own futex word `wake`:
 * it reads `wake`, sets `sleeping`, increments `bus->sleepers`, issues a
 * full barrier, reads the log once more and, still finding nothing,
 * futex-waits for `wake` to change.  The hook, after the records are
 * committed, issues the matching barrier and loads `sleepers`; when it is
 * non-zero it takes `subs_mu`, and for each sleeping subscriber whose
 * stream filter matches the appended stream bumps `wake` and futex-wakes
 * it.  This is the store-buffering (Dekker) pattern: subscriber
 * "sleepers++; barrier; read tag", producer "write tag; barrier; read
 * sleepers"; with a full barrier on each side at least one sees the other,
 * so either the subscriber finds the event or the producer wakes it.
 * Before announcing, a caught-up subscriber polls the log CAIRN__BUS_SPINS
 * times (pausing, then yielding): under load the next event usually
 * arrives within microseconds, and neither side then pays for a sleep.  The
 * producer's side is a compiler barrier only when the kernel supports
 * MEMBARRIER_CMD_PRIVATE_EXPEDITED: the subscriber, about to sleep anyway,
 * then pays for an IPI that runs a full barrier on every running thread of
 * the process (the asymmetric fence of liburcu and folly); otherwise both
 * sides use atomic_thread_fence(seq_cst).  Only subscribers that were
 * caught up are ever woken, and a woken subscriber drains everything
 * available before it sleeps again, so wake-ups are naturally batched.
 *
 * Pins.  An iterator reading the ring pins the records it has not passed;
 * a consumer that stops calling cairn_bus_next would stop every producer
 * once the ring fills.  Two rules bound that: (1) every repin_events
 * events, a subscriber whose cursor is behind the log's drain point (the
 * storage writer has written those records out, or an in-memory log's
 * owner released them) closes its iterator; the reopen at the cursor
 * reads the segments (durable log) or reports the loss (in-memory log);
 * (2) the keeper thread closes the iterator of any subscriber that holds a
 * ring pin and has made no cairn_bus_next call for park_ms (it compares a
 * per-subscriber call counter between its visits, so the subscriber's
 * path reads no clock).  Each
 * subscriber's mutex `mu` is held by cairn_bus_next for its whole call
 * (uncontended but for the keeper, which only try-locks it), so the keeper
 * never touches an iterator in use.
 *
 * Lag.  When the log says the cursor's seq was removed (CAIRN_EEXPIRED),
 * the subscriber is told the first seq still available and how many seqs
 * it missed (CAIRN_ESUBSCRIBER_LAGGED), and continues from there.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus_internal.h"
#include "internal/clock.h"
#include "log/log_internal.h"
#include "log/record.h"

/* GCC's ThreadSanitizer warns about every atomic_thread_fence (it cannot
 * model fences); see include/cairn/seqlock.h.  The fences below order the
 * Dekker handshake between producers and sleeping subscribers, which
 * involves only atomic objects, so TSan has nothing to report either way. */
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) &&                       \
    !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic ignored "-Wtsan"
#endif

/* Polls of the log a caught-up subscriber makes before it sleeps: half
 * with a short pause, half yielding the CPU. */
#define CAIRN__BUS_SPINS 64u

typedef struct handler {
    int id; /* 0: slot free */
    cairn_bus_handler_fn fn;
    void *ctx;
    cairn__filter_copy_t filter;
} handler_t;

struct cairn_bus_sub {
    cairn_bus_t *bus;
    uint32_t slot;
    char name[64];
    cairn__filter_copy_t filter;

    pthread_mutex_t mu;        /* held by cairn_bus_next; keeper try-locks */
    cairn_log_iter_t *it;      /* NULL: reopen at cursor */
    uint64_t cursor;           /* next seq to examine; 0 = time start */
    int64_t from_time_ns;      /* time start while cursor == 0 */
    uint32_t since_repin;
    uint64_t k_calls, k_since; /* keeper only: calls seen, since when */
    uint8_t *buf;              /* delivered event copy */
    size_t buf_cap;

    /* Written by the owner only (under mu, plain load + store), read
     * relaxed by stats and the keeper. */
    _Atomic uint64_t pos_pub, calls, delivered, missed, lag_notices, reopens,
        sleeps;

    _Alignas(64) _Atomic uint32_t wake; /* futex word */
    _Atomic int sleeping;

    cairn_metrics_gauge_t *m_lag;
    cairn_metrics_counter_t *m_delivered, *m_missed;
};

struct cairn_bus {
    cairn_log_t *log;
    cairn_bus_opts_t o;
    int asym; /* 1: membarrier available (see DESIGN, Waiting) */

    /* Dispatcher: handlers[], disp_it and nhandler_slots are accessed by
     * the holder of disp_busy only (disp_busy's seq_cst exchange acquires,
     * its seq_cst store releases). */
    _Alignas(64) _Atomic int disp_busy;
    _Atomic int disp_pending;
    _Atomic uint32_t nhandlers; /* read by the hook without disp_busy */
    cairn_log_iter_t *disp_it;
    handler_t handlers[CAIRN_BUS_HANDLERS_MAX];
    int next_handler_id;
    _Atomic uint64_t disp_seq, dispatched, keeper_dispatches;

    /* Subscribers. */
    _Alignas(64) _Atomic uint32_t sleepers;
    _Atomic int shut;
    pthread_mutex_t subs_mu;   /* subs[], nsubs, sub_seq */
    cairn_bus_sub_t **subs;
    uint32_t nsubs;
    uint32_t sub_seq;
    _Atomic uint64_t wakeups, unpins;

    /* Keeper thread. */
    pthread_t keeper;
    pthread_mutex_t kmu;
    pthread_cond_t kcond;
    int kstop;

    /* Attached projections. */
    pthread_mutex_t att_mu;
    cairn__bus_attached_t *attached;

    cairn_metrics_family_t *f_lag, *f_delivered, *f_missed;
};

/* ---- filters ------------------------------------------------------------- */

int cairn__filter_copy(cairn__filter_copy_t *d, const cairn_read_filter_t *s)
{
    memset(d, 0, sizeof *d);
    if (!s)
        return 0;
    if ((s->stream && s->stream_len == 0) ||
        (s->ntypes && (!s->types || !s->type_lens)))
        return CAIRN_EBAD_FILTER;
    if (s->stream) {
        if (!(d->stream = malloc(s->stream_len)))
            return -ENOMEM;
        memcpy(d->stream, s->stream, s->stream_len);
        d->f.stream = d->stream;
        d->f.stream_len = s->stream_len;
        d->f.stream_prefix = s->stream_prefix;
    }
    if (s->ntypes) {
        d->types = calloc(s->ntypes, sizeof *d->types);
        d->type_lens = calloc(s->ntypes, sizeof *d->type_lens);
        if (!d->types || !d->type_lens) {
            cairn__filter_free(d);
            return -ENOMEM;
        }
        for (size_t i = 0; i < s->ntypes; i++) {
            if (!s->types[i] || s->type_lens[i] == 0) {
                cairn__filter_free(d);
                return CAIRN_EBAD_FILTER;
            }
            if (!(d->types[i] = malloc(s->type_lens[i]))) {
                cairn__filter_free(d);
                return -ENOMEM;
            }
            memcpy(d->types[i], s->types[i], s->type_lens[i]);
            d->type_lens[i] = s->type_lens[i];
            d->f.ntypes = i + 1;
        }
        d->f.types = (const char *const *)d->types;
        d->f.type_lens = d->type_lens;
    }
    return 0;
}

void cairn__filter_free(cairn__filter_copy_t *fc)
{
    free(fc->stream);
    if (fc->types)
        for (size_t i = 0; i < fc->f.ntypes; i++)
            free(fc->types[i]);
    free(fc->types);
    free(fc->type_lens);
    memset(fc, 0, sizeof *fc);
}

/* Could an event of this stream match f?  (Types are not known here.) */
static int stream_may_match(const cairn_read_filter_t *f, const char *stream,
                            size_t len)
{
    if (!f->stream)
        return 1;
    if (f->stream_prefix)
        return len >= f->stream_len && memcmp(stream, f->stream, f->stream_len) == 0;
    return len == f->stream_len && memcmp(stream, f->stream, len) == 0;
}

/* Add to a counter only its owner writes (no read-modify-write needed). */
static inline void bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(
        c, atomic_load_explicit(c, memory_order_relaxed) + n,
        memory_order_relaxed);
}

/* ---- barriers and futexes ------------------------------------------------ */

/* The producer's half of the Dekker handshake (see DESIGN, Waiting). */
static inline void producer_barrier(const cairn_bus_t *bus)
{
    if (bus->asym)
        atomic_signal_fence(memory_order_seq_cst); /* compiler only */
    else
        atomic_thread_fence(memory_order_seq_cst);
}

/* The sleeper's half: a full barrier on every running thread. */
static void sleeper_barrier(const cairn_bus_t *bus)
{
    if (bus->asym &&
        syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
        return;
    atomic_thread_fence(memory_order_seq_cst);
}

static int asym_barrier_available(void)
{
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
        return 0;
    return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                   0, 0) == 0;
}

static void futex_wait(_Atomic uint32_t *w, uint32_t expect, int64_t timeout_ns)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tp = &ts;
    }
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, expect, tp, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL,
            0);
}

/* ---- dispatch ------------------------------------------------------------ */

/* Acquire disp_busy, waiting (add/remove handler, flush, close). */
static void disp_lock(cairn_bus_t *bus)
{
    unsigned spins = 0;
    /* seq_cst exchange: acquires the previous holder's release (below). */
    while (atomic_exchange_explicit(&bus->disp_busy, 1, memory_order_seq_cst)) {
        if (++spins < 64)
            cairn__cpu_relax();
        else
            sched_yield();
    }
}

static void disp_unlock(cairn_bus_t *bus)
{
    /* seq_cst store: releases handlers[]/disp_it, and takes part in the
     * pending handshake's total order (DESIGN, Dispatch). */
    atomic_store_explicit(&bus->disp_busy, 0, memory_order_seq_cst);
}

/* Read the dispatcher to the committed tail (disp_busy held).  Returns
 * the number of events dispatched. */
static uint64_t dispatch_locked(cairn_bus_t *bus)
{
    if (!bus->disp_it)
        return 0;
    uint64_t n = 0;
    cairn_event_t ev;
    int rc;
    for (;;) {
        rc = cairn_log_iter_next(bus->disp_it, &ev);
        if (rc == CAIRN_EEXPIRED) {
            /* Retention overtook the dispatcher (handlers ran so slowly
             * the segments were deleted): resume at the oldest seq. */
            cairn_log_iter_t *it;
            cairn_read_filter_t f = {.from_seq = cairn_log_first_seq(bus->log)};
            if (cairn_log_iter_open(bus->log, &f, &it) != 0)
                break;
            cairn_log_iter_close(bus->disp_it);
            bus->disp_it = it;
            continue;
        }
        if (rc != 1)
            break;
        for (uint32_t i = 0; i < CAIRN_BUS_HANDLERS_MAX; i++) {
            handler_t *h = &bus->handlers[i];
            if (h->id && cairn__filter_match(&h->filter.f, &ev))
                h->fn(h->ctx, &ev);
        }
        n++;
    }
    /* Relaxed: statistics and a monotone hint; flush returns it under
     * disp_busy. */
    atomic_store_explicit(&bus->disp_seq, cairn_log_iter_position(bus->disp_it),
                          memory_order_relaxed);
    if (n)
        atomic_fetch_add_explicit(&bus->dispatched, n, memory_order_relaxed);
    return n;
}

/* The hook's dispatch: non-blocking (DESIGN, Dispatch).  Returns the
 * events this call dispatched. */
static uint64_t dispatch_try(cairn_bus_t *bus)
{
    uint64_t n = 0;
    atomic_store_explicit(&bus->disp_pending, 1, memory_order_seq_cst);
    for (unsigned round = 0; round < CAIRN_BUS_DISPATCH_ROUNDS; round++) {
        if (atomic_exchange_explicit(&bus->disp_busy, 1, memory_order_seq_cst))
            return n; /* the holder will see disp_pending */
        atomic_store_explicit(&bus->disp_pending, 0, memory_order_seq_cst);
        n += dispatch_locked(bus);
        disp_unlock(bus);
        if (!atomic_load_explicit(&bus->disp_pending, memory_order_seq_cst))
            break;
    }
    return n;
}

/* ---- the commit hook ----------------------------------------------------- */

static void wake_matching(cairn_bus_t *bus, const char *stream, size_t len)
{
    pthread_mutex_lock(&bus->subs_mu);
    for (uint32_t i = 0; i < bus->nsubs; i++) {
        cairn_bus_sub_t *s = bus->subs[i];
        /* Acquire: pairs with the release increment of sleepers that
         * followed the subscriber's store of sleeping = 1. */
        if (!s || !atomic_load_explicit(&s->sleeping, memory_order_acquire) ||
            !stream_may_match(&s->filter.f, stream, len))
            continue;
        /* Release: a woken subscriber's futex re-check sees a new value. */
        atomic_fetch_add_explicit(&s->wake, 1, memory_order_release);
        futex_wake(&s->wake);
        atomic_fetch_add_explicit(&bus->wakeups, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&bus->subs_mu);
}

static void bus_on_commit(void *ctx, const char *stream, size_t stream_len,
                          const cairn_append_result_t *res)
{
    cairn_bus_t *bus = ctx;
    (void)res;
    /* Relaxed: a handler added concurrently applies from the dispatcher's
     * position anyway; the next hook or the keeper catches up. */
    if (atomic_load_explicit(&bus->nhandlers, memory_order_relaxed))
        dispatch_try(bus);
    producer_barrier(bus);
    /* Acquire: pairs with the subscriber's release increment (seq_cst
     * RMW), so its sleeping = 1 store is visible in wake_matching. */
    if (atomic_load_explicit(&bus->sleepers, memory_order_acquire) == 0)
        return;
    wake_matching(bus, stream, stream_len);
}

/* ---- keeper -------------------------------------------------------------- */

static uint64_t log_drain_seq(cairn_log_t *log)
{
    if (log->o.enhanced_mode)
        /* Acquire: a monotone position published by the releaser. */
        return atomic_load_explicit(&log->ring.drain_seq, memory_order_acquire);
    return cairn__mlog_first_seq(log);
}

static uint64_t sub_lag(const cairn_bus_sub_t *s)
{
    uint64_t next = cairn_log_next_seq(s->bus->log);
    uint64_t pos = atomic_load_explicit(&s->pos_pub, memory_order_relaxed);
    return pos && next > pos ? next - pos : 0;
}

static void keeper_visit(cairn_bus_t *bus, cairn_bus_sub_t *s, uint64_t now)
{
    if (s->m_lag)
        cairn_metrics_gauge_set(s->m_lag, (int64_t)sub_lag(s));
    if (pthread_mutex_trylock(&s->mu) != 0)
        return; /* inside cairn_bus_next: it holds its pin legitimately */
    /* Parked = no cairn_bus_next call since the keeper last looked, for
     * park_ms (no clock read on the subscriber's path). */
    uint64_t calls = atomic_load_explicit(&s->calls, memory_order_relaxed);
    if (calls != s->k_calls) {
        s->k_calls = calls;
        s->k_since = now;
    } else if (s->it && s->it->slot >= 0 &&
               now - s->k_since >= (uint64_t)bus->o.park_ms * 1000000u) {
        cairn_log_iter_close(s->it);
        s->it = NULL;
        bump(&s->reopens, 1);
        atomic_fetch_add_explicit(&bus->unpins, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->mu);
}

static void *keeper_main(void *arg)
{
    cairn_bus_t *bus = arg;
    pthread_mutex_lock(&bus->kmu);
    while (!bus->kstop) {
        uint64_t until = cairn__mono_ns() +
                         (uint64_t)CAIRN_BUS_KEEPER_INTERVAL_MS * 1000000u;
        struct timespec ts = {(time_t)(until / 1000000000u),
                              (long)(until % 1000000000u)};
        pthread_cond_timedwait(&bus->kcond, &bus->kmu, &ts);
        if (bus->kstop)
            break;
        pthread_mutex_unlock(&bus->kmu);
        /* Relaxed: a stale 0 only delays to the next tick. */
        if (atomic_load_explicit(&bus->disp_pending, memory_order_relaxed) &&
            atomic_load_explicit(&bus->nhandlers, memory_order_relaxed) &&
            dispatch_try(bus))
            atomic_fetch_add_explicit(&bus->keeper_dispatches, 1,
                                      memory_order_relaxed);
        uint64_t now = cairn__mono_ns();
        pthread_mutex_lock(&bus->subs_mu);
        for (uint32_t i = 0; i < bus->nsubs; i++)
            if (bus->subs[i])
                keeper_visit(bus, bus->subs[i], now);
        pthread_mutex_unlock(&bus->subs_mu);
        pthread_mutex_lock(&bus->kmu);
    }
    pthread_mutex_unlock(&bus->kmu);
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------- */

void cairn_bus_opts_init(cairn_bus_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->max_subscribers = CAIRN_BUS_SUBSCRIBERS_DEFAULT;
    o->park_ms = CAIRN_BUS_PARK_MS_DEFAULT;
    o->repin_events = CAIRN_BUS_REPIN_EVENTS_DEFAULT;
}

static int register_metrics(cairn_bus_t *bus)
{
    static const char *const labels[] = {"subscriber"};
    cairn_metrics_desc_t d = {.label_names = labels, .label_count = 1};
    d.type = CAIRN_METRICS_GAUGE;
    d.name = "cairn_bus_subscriber_lag";
    d.help = "Events appended at or after the subscriber's cursor.";
    int rc = cairn_metrics_register(bus->o.metrics, &d, &bus->f_lag);
    if (rc)
        return rc;
    d.type = CAIRN_METRICS_COUNTER;
    d.name = "cairn_bus_delivered_total";
    d.help = "Events delivered to the subscriber.";
    if ((rc = cairn_metrics_register(bus->o.metrics, &d, &bus->f_delivered)))
        return rc;
    d.name = "cairn_bus_missed_total";
    d.help = "Events the subscriber missed because retention removed them.";
    return cairn_metrics_register(bus->o.metrics, &d, &bus->f_missed);
}

int cairn_bus_create(cairn_log_t *log, const cairn_bus_opts_t *opts,
                     cairn_bus_t **out)
{
    cairn_bus_opts_t o;
    if (opts)
        o = *opts;
    else
        cairn_bus_opts_init(&o);
    if (o.max_subscribers == 0 || o.max_subscribers > CAIRN_BUS_SUBSCRIBERS_CAP ||
        o.park_ms == 0 || o.park_ms > CAIRN_BUS_PARK_MS_CAP ||
        o.repin_events == 0 || o.repin_events > CAIRN_BUS_REPIN_EVENTS_CAP)
        return CAIRN_EBAD_OPTION;
    /* The hook cannot be removed, so a second bus would leave the first
     * one's hook running on freed memory. */
    unsigned nh = atomic_load_explicit(&log->nhooks, memory_order_acquire);
    for (unsigned i = 0; i < nh; i++)
        if (log->hooks[i].fn == bus_on_commit)
            return CAIRN_EBUS_EXISTS;
    cairn_bus_t *bus = calloc(1, sizeof *bus);
    if (!bus)
        return -ENOMEM;
    bus->subs = calloc(o.max_subscribers, sizeof *bus->subs);
    if (!bus->subs) {
        free(bus);
        return -ENOMEM;
    }
    bus->log = log;
    bus->o = o;
    bus->asym = asym_barrier_available();
    bus->next_handler_id = 1;
    pthread_mutex_init(&bus->subs_mu, NULL);
    pthread_mutex_init(&bus->att_mu, NULL);
    pthread_mutex_init(&bus->kmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&bus->kcond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = 0;
    if (o.metrics)
        rc = register_metrics(bus);
    if (rc == 0)
        rc = -pthread_create(&bus->keeper, NULL, keeper_main, bus);
    if (rc == 0) {
        rc = cairn__log_add_commit_hook(log, bus_on_commit, bus);
        if (rc) {
            pthread_mutex_lock(&bus->kmu);
            bus->kstop = 1;
            pthread_cond_signal(&bus->kcond);
            pthread_mutex_unlock(&bus->kmu);
            pthread_join(bus->keeper, NULL);
        }
    }
    if (rc) {
        pthread_cond_destroy(&bus->kcond);
        pthread_mutex_destroy(&bus->kmu);
        pthread_mutex_destroy(&bus->att_mu);
        pthread_mutex_destroy(&bus->subs_mu);
        free(bus->subs);
        free(bus);
        return rc;
    }
    *out = bus;
    return 0;
}

void cairn_bus_shutdown(cairn_bus_t *bus)
{
    /* seq_cst: ordered with the subscriber's sleepers increment and
     * re-check of shut (the same handshake as an append's). */
    atomic_store_explicit(&bus->shut, 1, memory_order_seq_cst);
    pthread_mutex_lock(&bus->subs_mu);
    for (uint32_t i = 0; i < bus->nsubs; i++) {
        cairn_bus_sub_t *s = bus->subs[i];
        if (!s)
            continue;
        atomic_fetch_add_explicit(&s->wake, 1, memory_order_release);
        futex_wake(&s->wake);
    }
    pthread_mutex_unlock(&bus->subs_mu);
}

static void sub_free(cairn_bus_sub_t *s)
{
    cairn_log_iter_close(s->it);
    cairn__filter_free(&s->filter);
    pthread_mutex_destroy(&s->mu);
    free(s->buf);
    free(s);
}

void cairn_bus_close(cairn_bus_t *bus)
{
    if (!bus)
        return;
    pthread_mutex_lock(&bus->kmu);
    bus->kstop = 1;
    pthread_cond_signal(&bus->kcond);
    pthread_mutex_unlock(&bus->kmu);
    pthread_join(bus->keeper, NULL);

    for (;;) {
        pthread_mutex_lock(&bus->att_mu);
        cairn__bus_attached_t *a = bus->attached;
        pthread_mutex_unlock(&bus->att_mu);
        if (!a)
            break;
        a->destroy(a->obj); /* detaches itself */
    }
    for (uint32_t i = 0; i < bus->nsubs; i++)
        if (bus->subs[i])
            sub_free(bus->subs[i]);
    for (uint32_t i = 0; i < CAIRN_BUS_HANDLERS_MAX; i++)
        if (bus->handlers[i].id)
            cairn__filter_free(&bus->handlers[i].filter);
    cairn_log_iter_close(bus->disp_it);
    pthread_cond_destroy(&bus->kcond);
    pthread_mutex_destroy(&bus->kmu);
    pthread_mutex_destroy(&bus->att_mu);
    pthread_mutex_destroy(&bus->subs_mu);
    free(bus->subs);
    free(bus);
}

cairn_log_t *cairn_bus_log(const cairn_bus_t *bus)
{
    return bus->log;
}

/* ---- handlers ------------------------------------------------------------ */

int cairn_bus_add_handler(cairn_bus_t *bus, const cairn_read_filter_t *filter,
                          cairn_bus_handler_fn fn, void *ctx, int *id)
{
    if (!fn)
        return CAIRN_EBAD_OPTION;
    cairn__filter_copy_t fc;
    int rc = cairn__filter_copy(&fc, filter);
    if (rc)
        return rc;
    disp_lock(bus);
    if (!bus->disp_it) {
        cairn_read_filter_t f = {.from_seq = cairn_log_next_seq(bus->log)};
        rc = cairn_log_iter_open(bus->log, &f, &bus->disp_it);
    }
    uint32_t i = 0;
    if (rc == 0) {
        while (i < CAIRN_BUS_HANDLERS_MAX && bus->handlers[i].id)
            i++;
        if (i == CAIRN_BUS_HANDLERS_MAX)
            rc = CAIRN_EBUS_FULL;
    }
    if (rc == 0) {
        handler_t *h = &bus->handlers[i];
        h->id = bus->next_handler_id++;
        h->fn = fn;
        h->ctx = ctx;
        h->filter = fc;
        *id = h->id;
        atomic_fetch_add_explicit(&bus->nhandlers, 1, memory_order_relaxed);
    }
    disp_unlock(bus);
    if (rc)
        cairn__filter_free(&fc);
    return rc;
}

int cairn_bus_remove_handler(cairn_bus_t *bus, int id)
{
    int rc = CAIRN_ENOT_FOUND;
    disp_lock(bus);
    for (uint32_t i = 0; id > 0 && i < CAIRN_BUS_HANDLERS_MAX; i++) {
        handler_t *h = &bus->handlers[i];
        if (h->id == id) {
            cairn__filter_free(&h->filter);
            memset(h, 0, sizeof *h);
            atomic_fetch_sub_explicit(&bus->nhandlers, 1, memory_order_relaxed);
            rc = 0;
            break;
        }
    }
    disp_unlock(bus);
    return rc;
}

uint64_t cairn_bus_flush(cairn_bus_t *bus)
{
    disp_lock(bus);
    atomic_store_explicit(&bus->disp_pending, 0, memory_order_seq_cst);
    dispatch_locked(bus);
    uint64_t seq = bus->disp_it ? cairn_log_iter_position(bus->disp_it)
                                : cairn_log_next_seq(bus->log);
    disp_unlock(bus);
    return seq;
}

/* ---- subscribers --------------------------------------------------------- */

int cairn_bus_subscribe(cairn_bus_t *bus, const cairn_bus_sub_opts_t *o,
                        cairn_bus_sub_t **out)
{
    if (atomic_load_explicit(&bus->shut, memory_order_relaxed))
        return CAIRN_ECLOSED;
    cairn_bus_sub_opts_t none;
    if (!o) {
        memset(&none, 0, sizeof none);
        o = &none;
    }
    if (o->from_time_ns < 0)
        return CAIRN_EBAD_FILTER;
    cairn_bus_sub_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    cairn_read_filter_t f = {.stream = o->stream,
                             .stream_len = o->stream_len,
                             .stream_prefix = o->stream_prefix,
                             .types = o->types,
                             .type_lens = o->type_lens,
                             .ntypes = o->ntypes};
    int rc = cairn__filter_copy(&s->filter, &f);
    if (rc) {
        free(s);
        return rc;
    }
    s->bus = bus;
    pthread_mutex_init(&s->mu, NULL);
    if (o->from_seq)
        s->cursor = o->from_seq;
    else if (o->from_time_ns)
        s->from_time_ns = o->from_time_ns;
    else
        s->cursor = cairn_log_next_seq(bus->log);
    atomic_store_explicit(&s->pos_pub, s->cursor, memory_order_relaxed);
    s->k_since = cairn__mono_ns();

    pthread_mutex_lock(&bus->subs_mu);
    uint32_t i = 0;
    while (i < bus->nsubs && bus->subs[i])
        i++;
    if (i == bus->o.max_subscribers) {
        rc = CAIRN_EBUS_FULL;
    } else {
        s->slot = i;
        if (o->name)
            snprintf(s->name, sizeof s->name, "%s", o->name);
        else
            snprintf(s->name, sizeof s->name, "sub-%u", bus->sub_seq);
        bus->sub_seq++;
        if (bus->o.metrics) {
            const char *v[] = {s->name};
            rc = cairn_metrics_gauge_child(bus->f_lag, v, &s->m_lag);
            if (rc == 0)
                rc = cairn_metrics_counter_child(bus->f_delivered, v,
                                                 &s->m_delivered);
            if (rc == 0)
                rc = cairn_metrics_counter_child(bus->f_missed, v, &s->m_missed);
        }
        if (rc == 0) {
            bus->subs[i] = s;
            if (i == bus->nsubs)
                bus->nsubs++;
        }
    }
    pthread_mutex_unlock(&bus->subs_mu);
    if (rc) {
        sub_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void cairn_bus_unsubscribe(cairn_bus_sub_t *s)
{
    if (!s)
        return;
    cairn_bus_t *bus = s->bus;
    pthread_mutex_lock(&bus->subs_mu);
    bus->subs[s->slot] = NULL;
    while (bus->nsubs && !bus->subs[bus->nsubs - 1])
        bus->nsubs--;
    pthread_mutex_unlock(&bus->subs_mu);
    if (s->m_lag)
        cairn_metrics_gauge_set(s->m_lag, 0);
    sub_free(s);
}

uint64_t cairn_bus_position(const cairn_bus_sub_t *s)
{
    return atomic_load_explicit(&s->pos_pub, memory_order_relaxed);
}

static void set_cursor(cairn_bus_sub_t *s, uint64_t c)
{
    s->cursor = c;
    atomic_store_explicit(&s->pos_pub, c, memory_order_relaxed);
}

/* Copy ev into s's buffer and repoint it there. */
static int copy_event(cairn_bus_sub_t *s, cairn_event_t *ev)
{
    size_t need = (size_t)ev->stream_len + ev->type_len + ev->id_len +
                  ev->correlation_id_len + ev->causation_id_len +
                  ev->payload_len;
    if (need > s->buf_cap) {
        size_t cap = s->buf_cap ? s->buf_cap : 256;
        while (cap < need)
            cap *= 2;
        uint8_t *nb = realloc(s->buf, cap);
        if (!nb)
            return -ENOMEM;
        s->buf = nb;
        s->buf_cap = cap;
    }
    uint8_t *p = s->buf;
#define CAIRN__COPY_FIELD(ptr, len)                                            \
    do {                                                                       \
        if (len)                                                               \
            memcpy(p, ptr, len);                                               \
        ptr = (const void *)p;                                                 \
        p += len;                                                              \
    } while (0)
    CAIRN__COPY_FIELD(ev->stream, ev->stream_len);
    CAIRN__COPY_FIELD(ev->type, ev->type_len);
    CAIRN__COPY_FIELD(ev->id, ev->id_len);
    CAIRN__COPY_FIELD(ev->correlation_id, ev->correlation_id_len);
    CAIRN__COPY_FIELD(ev->causation_id, ev->causation_id_len);
    CAIRN__COPY_FIELD(ev->payload, ev->payload_len);
#undef CAIRN__COPY_FIELD
    return 0;
}

/* Report what retention removed between the cursor and the oldest seq. */
static int report_lag(cairn_bus_sub_t *s, cairn_bus_lag_t *lag)
{
    uint64_t first = cairn_log_first_seq(s->bus->log);
    if (first <= s->cursor)
        return 0; /* nothing missed after all: just reopen */
    cairn_bus_lag_t l = {s->cursor, first, first - s->cursor};
    if (lag)
        *lag = l;
    set_cursor(s, first);
    bump(&s->missed, l.missed);
    bump(&s->lag_notices, 1);
    if (s->m_missed)
        cairn_metrics_counter_add(s->m_missed, l.missed);
    return CAIRN_ESUBSCRIBER_LAGGED;
}

static int sub_open(cairn_bus_sub_t *s, cairn_bus_lag_t *lag)
{
    cairn_read_filter_t f = s->filter.f;
    if (s->cursor)
        f.from_seq = s->cursor;
    else
        f.time_from_ns = s->from_time_ns;
    for (int tries = 0;; tries++) {
        int rc = cairn_log_iter_open(s->bus->log, &f, &s->it);
        if (rc != CAIRN_EEXPIRED || !s->cursor)
            return rc;
        rc = report_lag(s, lag);
        if (rc || tries >= 2)
            return rc ? rc : CAIRN_EEXPIRED;
        f.from_seq = s->cursor;
    }
}

/* One read: 1 and *ev, 0 nothing committed yet, or a negative code. */
static int sub_read(cairn_bus_sub_t *s, cairn_event_t *ev, cairn_bus_lag_t *lag)
{
    cairn_bus_t *bus = s->bus;
    int rc;
    for (int tries = 0;; tries++) {
        if (!s->it) {
            if ((rc = sub_open(s, lag)) != 0)
                return rc;
            bump(&s->reopens, 1);
        }
        rc = cairn_log_iter_next(s->it, ev);
        if (rc != CAIRN_EEXPIRED)
            break;
        /* Retention removed the segment under the cursor. */
        cairn_log_iter_close(s->it);
        s->it = NULL;
        if (!s->cursor || tries >= 2)
            return rc;
        if ((rc = report_lag(s, lag)) != 0)
            return rc;
    }
    if (rc < 0)
        return rc;
    if (rc == 0) {
        if (s->cursor)
            set_cursor(s, cairn_log_iter_position(s->it));
        return 0;
    }
    if ((rc = copy_event(s, ev)) < 0)
        return rc;
    int time_start = s->cursor == 0;
    set_cursor(s, ev->seq + 1);
    bump(&s->delivered, 1);
    if (s->m_delivered)
        cairn_metrics_counter_inc(s->m_delivered);
    /* A time start filtered on time: from here on the cursor is a seq and
     * later events are delivered whatever their time. */
    int reopen = time_start;
    if (++s->since_repin >= bus->o.repin_events) {
        s->since_repin = 0;
        if (s->m_lag)
            cairn_metrics_gauge_set(s->m_lag, (int64_t)sub_lag(s));
        /* Behind the drain point: those records are on disk (or were
         * released), so stop pinning them. */
        if (s->it->slot >= 0 && s->cursor < log_drain_seq(bus->log))
            reopen = 1;
    }
    if (reopen) {
        cairn_log_iter_close(s->it);
        s->it = NULL;
    }
    return 1;
}

int cairn_bus_next(cairn_bus_sub_t *s, cairn_event_t *ev, int64_t timeout_ns,
                   cairn_bus_lag_t *lag)
{
    cairn_bus_t *bus = s->bus;
    const uint64_t deadline =
        timeout_ns > 0 ? cairn__mono_ns() + (uint64_t)timeout_ns : 0;
    int rc;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (atomic_load_explicit(&bus->shut, memory_order_relaxed)) {
            rc = CAIRN_ECLOSED;
            break;
        }
        if ((rc = sub_read(s, ev, lag)) != 0)
            break;
        int64_t left = -1;
        if (timeout_ns == 0) {
            rc = CAIRN_ETIMEOUT;
            break;
        }
        /* Spin briefly, then yield, before paying for a sleep and a
         * wake-up: a producer mid-burst usually commits again within a
         * few microseconds. */
        for (unsigned i = 0; rc == 0 && i < CAIRN__BUS_SPINS; i++) {
            if (i < CAIRN__BUS_SPINS / 2)
                for (unsigned k = 0; k < 32; k++)
                    cairn__cpu_relax();
            else
                sched_yield();
            rc = sub_read(s, ev, lag);
        }
        if (rc != 0)
            break;
        if (timeout_ns > 0) {
            uint64_t now = cairn__mono_ns();
            if (now >= deadline) {
                rc = CAIRN_ETIMEOUT;
                break;
            }
            left = (int64_t)(deadline - now);
        }
        /* Announce, barrier, re-check, sleep (DESIGN, Waiting). */
        uint32_t w = atomic_load_explicit(&s->wake, memory_order_acquire);
        atomic_store_explicit(&s->sleeping, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&bus->sleepers, 1, memory_order_seq_cst);
        sleeper_barrier(bus);
        rc = atomic_load_explicit(&bus->shut, memory_order_seq_cst)
                 ? CAIRN_ECLOSED
                 : sub_read(s, ev, lag);
        if (rc == 0) {
            bump(&s->sleeps, 1);
            futex_wait(&s->wake, w, left);
        }
        atomic_store_explicit(&s->sleeping, 0, memory_order_relaxed);
        atomic_fetch_sub_explicit(&bus->sleepers, 1, memory_order_relaxed);
        if (rc != 0)
            break;
    }
    bump(&s->calls, 1);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void cairn_bus_sub_stats(const cairn_bus_sub_t *s, cairn_bus_sub_stats_t *o)
{
    memset(o, 0, sizeof *o);
    o->position = atomic_load_explicit(&s->pos_pub, memory_order_relaxed);
    o->lag = sub_lag(s);
    o->delivered = atomic_load_explicit(&s->delivered, memory_order_relaxed);
    o->missed = atomic_load_explicit(&s->missed, memory_order_relaxed);
    o->lag_notices = atomic_load_explicit(&s->lag_notices, memory_order_relaxed);
    o->reopens = atomic_load_explicit(&s->reopens, memory_order_relaxed);
    o->sleeps = atomic_load_explicit(&s->sleeps, memory_order_relaxed);
    o->buffer_bytes = s->buf_cap;
}

void cairn_bus_stats(cairn_bus_t *bus, cairn_bus_stats_t *o)
{
    memset(o, 0, sizeof *o);
    pthread_mutex_lock(&bus->subs_mu);
    for (uint32_t i = 0; i < bus->nsubs; i++)
        o->subscribers += bus->subs[i] != NULL;
    pthread_mutex_unlock(&bus->subs_mu);
    o->handlers = atomic_load_explicit(&bus->nhandlers, memory_order_relaxed);
    o->dispatched = atomic_load_explicit(&bus->dispatched, memory_order_relaxed);
    o->dispatch_seq = atomic_load_explicit(&bus->disp_seq, memory_order_relaxed);
    o->wakeups = atomic_load_explicit(&bus->wakeups, memory_order_relaxed);
    o->unpins = atomic_load_explicit(&bus->unpins, memory_order_relaxed);
    o->keeper_dispatches =
        atomic_load_explicit(&bus->keeper_dispatches, memory_order_relaxed);
}

/* ---- attachments --------------------------------------------------------- */

int cairn__bus_attach(cairn_bus_t *bus, cairn__bus_attached_t *a)
{
    int rc = 0;
    pthread_mutex_lock(&bus->att_mu);
    for (cairn__bus_attached_t *x = bus->attached; x; x = x->next)
        if (strcmp(x->name, a->name) == 0)
            rc = CAIRN_EPROJECTION_EXISTS;
    if (rc == 0) {
        a->next = bus->attached;
        bus->attached = a;
    }
    pthread_mutex_unlock(&bus->att_mu);
    return rc;
}

void cairn__bus_detach(cairn_bus_t *bus, cairn__bus_attached_t *a)
{
    pthread_mutex_lock(&bus->att_mu);
    for (cairn__bus_attached_t **pp = &bus->attached; *pp; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    pthread_mutex_unlock(&bus->att_mu);
}

void *cairn__bus_find(cairn_bus_t *bus, const char *name)
{
    void *obj = NULL;
    pthread_mutex_lock(&bus->att_mu);
    for (cairn__bus_attached_t *x = bus->attached; x; x = x->next)
        if (strcmp(x->name, name) == 0) {
            obj = x->obj;
            break;
        }
    pthread_mutex_unlock(&bus->att_mu);
    return obj;
}
