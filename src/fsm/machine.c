/*
 * machine.c — state machine instances: the lock-free machine (CAS on a
 * packed word, futex wake-ups) and its boring twin (mutex + condition
 * variable), one interface chosen by opts.enhanced.
 *
 * DESIGN (enhanced).
 *
 * State.  One _Atomic uint64_t `word`: state in bits 63..56, version in
 * bits 55..0 (fsm.h explains the width).  A fire loads the word, looks the
 * transition up in the definition's dense table, runs the guard, and
 * installs (target, version + 1) with one strong compare-and-swap.  A lost
 * CAS returns the winner's word and the loop decides again from the new
 * state, so when N threads race the same transition exactly one CAS
 * succeeds and the others re-decide against the target state — where the
 * trigger is normally invalid.  Successes are not counted separately: the
 * version is the number of successful transitions.
 *
 * Context.  The context lives in a value cell (include/cairn/cell.h):
 * word 0 is the packed word of the transition that published it, words
 * 1..14 the caller's bytes.  Only a fire whose CAS won publishes, after
 * the CAS.  Two winners of consecutive transitions may publish
 * concurrently and in either order, so publication takes the cell's
 * sequence as a writers' lock (cairn_seqlock_write_begin_mw) and writes only
 * if its version is newer than the one in the cell: the context ends up as
 * the one of the latest transition that carried one, never an older one.
 * Readers get (context, word it belongs to) as one consistent snapshot.
 *
 * Waiting.  The futex is the low 32 bits of `word` (all version bits, so
 * they change on every transition, self-transitions included; the high
 * half changes only on a state change or every 2^32 transitions, so a
 * sleeper on it would miss A -> A).  A waiter increments `waiters`, then
 * re-reads the word, then sleeps with FUTEX_WAIT_BITSET (absolute
 * CLOCK_MONOTONIC deadline, so retries never stretch the timeout) while
 * the low half still equals the value it saw.  A fire that won reads
 * `waiters` after its CAS and calls FUTEX_WAKE only when it is non-zero.
 * The increment, the re-read, the CAS and the read of `waiters` are all
 * seq_cst, so either the waiter's re-read sees the new word or the fire
 * sees the waiter (store-buffering is excluded by the single total order);
 * a wake that arrives between the re-read and the sleep is not lost because
 * the kernel compares the futex word with the expected value atomically
 * with queueing the sleeper.  Without waiters a transition makes no
 * syscall.
 *
 * Statistics are relaxed atomic counters on their own cache lines; only
 * failures and one fire in latency_sample_every (a per-thread tick) touch
 * them, so the success path costs one CAS and one relaxed load.
 *
 * DESIGN (twin).  The same fields under one pthread mutex: fire checks,
 * guards and stores the word and the context with the mutex held and
 * broadcasts a CLOCK_MONOTONIC condition variable when waiters are
 * registered.  Behaviour is identical; tests/unit/test_fsm.c runs one
 * conformance suite against both.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cairn/cell.h"
#include "fsm/fsm_internal.h"
#include "internal/clock.h"

#define CONTEXT_WORDS (CAIRN_FSM_CONTEXT_MAX / 8)

_Static_assert(CONTEXT_WORDS + 1 <= CAIRN_CELL_WORDS_MAX,
               "the context and its word must fit one value cell");
_Static_assert(CAIRN_FSM_STATES_MAX <= 256,
               "the packed word keeps the state in 8 bits");

typedef struct fsm_counters {
    _Atomic uint64_t invalid;
    _Atomic uint64_t guard_rejected;
    _Atomic uint64_t unknown;
    _Atomic uint64_t cas_retries;
    _Atomic uint64_t context_skips;
    _Atomic uint64_t waits;
    _Atomic uint64_t wait_timeouts;
    _Atomic uint64_t wake_calls;
    _Atomic uint64_t lat_samples;
    _Atomic uint64_t lat_min;
    _Atomic uint64_t lat_max;
    _Atomic uint64_t lat_sum;
    _Atomic uint64_t lat_bucket[CAIRN_FSM_LATENCY_BUCKETS];
} fsm_counters_t;

struct cairn_fsm {
    /* Hot line: what every fire reads.  `waiters` shares it with the word
     * on purpose: a winner already owns the line after its CAS, so the
     * read of `waiters` costs nothing. */
    _Alignas(64) _Atomic uint64_t word;
    _Atomic uint32_t waiters;
    int enhanced;
    uint32_t sample_mask;
    uint32_t context_size;
    const cairn_fsm_def_t *def;
    void *guard_ctx;

    _Alignas(64) fsm_counters_t c;

    /* The enhanced machine's context (see DESIGN). */
    cairn_cell_t ctx;

    /* The twin. */
    _Alignas(64) pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t mu_waiters;
    uint64_t mu_ctx_word;
    uint64_t mu_ctx[CONTEXT_WORDS];
};

/* Per-thread tick choosing which fires are timed. */
static _Thread_local uint32_t fire_tick;

CAIRN_EXPORT void cairn_fsm_opts_init(cairn_fsm_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->enhanced = 1;
    opts->latency_sample_every = CAIRN_FSM_LATENCY_SAMPLE_DEFAULT;
}

CAIRN_EXPORT int cairn_fsm_open(const cairn_fsm_def_t *def,
                                const cairn_fsm_opts_t *opts,
                                cairn_fsm_t **out)
{
    cairn_fsm_opts_t o;
    if (opts)
        o = *opts;
    else
        cairn_fsm_opts_init(&o);
    if (o.context_size > CAIRN_FSM_CONTEXT_MAX)
        return CAIRN_EBAD_OPTION;
    uint32_t every = o.latency_sample_every;
    if (every == 0)
        every = CAIRN_FSM_LATENCY_SAMPLE_DEFAULT;
    if (every > CAIRN_FSM_LATENCY_SAMPLE_CAP)
        every = CAIRN_FSM_LATENCY_SAMPLE_CAP;
    uint32_t pow2 = 1;
    while (pow2 < every)
        pow2 <<= 1;

    size_t size = (sizeof(cairn_fsm_t) + 63) & ~(size_t)63;
    cairn_fsm_t *m = aligned_alloc(64, size);
    if (!m)
        return -ENOMEM;
    memset(m, 0, size);
    m->enhanced = o.enhanced != 0;
    m->sample_mask = pow2 - 1;
    m->context_size = (uint32_t)o.context_size;
    m->def = def;
    m->guard_ctx = o.guard_ctx;
    atomic_init(&m->word, 0); /* initial state 0, version 0 */
    atomic_init(&m->waiters, 0);
    atomic_init(&m->c.lat_min, UINT64_MAX);

    uint64_t words[CONTEXT_WORDS + 1] = {0};
    if (o.initial_context && o.context_size)
        memcpy(&words[1], o.initial_context, o.context_size);
    cairn_cell_init(&m->ctx);
    cairn_cell_store(&m->ctx, words, CONTEXT_WORDS + 1);
    memcpy(m->mu_ctx, &words[1], sizeof m->mu_ctx);
    m->mu_ctx_word = 0;

    if (!m->enhanced) {
        pthread_condattr_t ca;
        int rc = pthread_mutex_init(&m->mu, NULL);
        if (rc) {
            free(m);
            return -rc;
        }
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        rc = pthread_cond_init(&m->cv, &ca);
        pthread_condattr_destroy(&ca);
        if (rc) {
            pthread_mutex_destroy(&m->mu);
            free(m);
            return -rc;
        }
    }
    *out = m;
    return 0;
}

CAIRN_EXPORT void cairn_fsm_close(cairn_fsm_t *m)
{
    if (!m)
        return;
    if (!m->enhanced) {
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
    }
    free(m);
}

CAIRN_EXPORT const cairn_fsm_def_t *cairn_fsm_def(const cairn_fsm_t *m)
{
    return m->def;
}

static inline void count(_Atomic uint64_t *c)
{
    /* Relaxed: a statistic, ordered against nothing. */
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Is version(a) later than version(b), modulo 2^56? */
static inline int version_after(uint64_t a, uint64_t b)
{
    uint64_t d = (a - b) & CAIRN_FSM_VERSION_MASK;
    return d != 0 && d < (UINT64_C(1) << (CAIRN_FSM_VERSION_BITS - 1));
}

static uint32_t *futex_word(cairn_fsm_t *m)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (uint32_t *)(void *)&m->word;
#else
    return (uint32_t *)(void *)&m->word + 1;
#endif
}

/* ---- the lock-free machine -------------------------------------------- */

static void publish_context(cairn_fsm_t *m, uint64_t won, const void *context)
{
    uint64_t words[CONTEXT_WORDS] = {0};
    memcpy(words, context, m->context_size);
    uint64_t token = cairn_seqlock_write_begin_mw(&m->ctx.lock);
    /* Relaxed: inside the writers' lock, which (acquire on the sequence)
     * orders this load after the previous publisher's stores. */
    uint64_t cur = atomic_load_explicit(&m->ctx.word[0], memory_order_relaxed);
    if (version_after(won, cur)) {
        atomic_store_explicit(&m->ctx.word[0], won, memory_order_relaxed);
        cairn__cell_put(&m->ctx, 1, words, CONTEXT_WORDS);
    } else {
        count(&m->c.context_skips);
    }
    cairn_seqlock_write_end(&m->ctx.lock, token);
}

static int lf_fire(cairn_fsm_t *m, uint32_t trig, const void *arg,
                   const void *context, cairn_fsm_result_t *res)
{
    const cairn_fsm_def_t *def = m->def;
    /* Acquire: pairs with the CAS of the transition that installed this
     * word, so whatever its thread did before (its caller's writes) is
     * visible to the guard and the caller. */
    uint64_t w = atomic_load_explicit(&m->word, memory_order_acquire);
    for (;;) {
        uint32_t from = cairn_fsm_word_state(w);
        size_t cell = (size_t)from * def->ntriggers + trig;
        uint32_t to = def->next[cell];
        res->from = from;
        res->word = w;
        if (to == CAIRN__FSM_NONE) {
            count(&m->c.invalid);
            return CAIRN_EFSM_INVALID_TRANSITION;
        }
        if (def->guards && def->guards[cell] &&
            def->guards[cell](m->guard_ctx, from, trig, arg) != 0) {
            count(&m->c.guard_rejected);
            return CAIRN_EFSM_GUARD_REJECTED;
        }
        uint64_t nw = ((uint64_t)to << CAIRN_FSM_VERSION_BITS) |
                      ((w + 1) & CAIRN_FSM_VERSION_MASK);
        /* seq_cst on success: releases this thread's prior writes to the
         * next fire's acquire, and takes part in the total order with the
         * waiters' increment and re-read (DESIGN, Waiting).  Acquire on
         * failure: the winner's word is decided on like a fresh load. */
        if (atomic_compare_exchange_strong_explicit(&m->word, &w, nw,
                                                    memory_order_seq_cst,
                                                    memory_order_acquire)) {
            res->to = to;
            res->word = nw;
            if (context)
                publish_context(m, nw, context);
            /* seq_cst: after the CAS in the total order, see DESIGN. */
            if (atomic_load_explicit(&m->waiters, memory_order_seq_cst)) {
                count(&m->c.wake_calls);
                syscall(SYS_futex, futex_word(m),
                        FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, NULL, NULL,
                        0);
            }
            return 0;
        }
        count(&m->c.cas_retries);
    }
}

static int lf_wait(cairn_fsm_t *m, uint64_t seen, uint64_t timeout_ns,
                   uint64_t *now)
{
    /* Acquire: a changed word comes with the winner's prior writes. */
    uint64_t w = atomic_load_explicit(&m->word, memory_order_acquire);
    if (w != seen || timeout_ns == 0) {
        *now = w;
        return w != seen ? 0 : CAIRN_ETIMEOUT;
    }
    uint64_t deadline = 0;
    struct timespec ts, *tsp = NULL;
    if (timeout_ns != UINT64_MAX) {
        deadline = cairn__mono_ns() + timeout_ns;
        ts.tv_sec = (time_t)(deadline / 1000000000u);
        ts.tv_nsec = (long)(deadline % 1000000000u);
        tsp = &ts;
    }
    count(&m->c.waits);
    /* seq_cst: ordered before the re-read below in the total order that
     * the fire's CAS and its read of `waiters` also belong to. */
    atomic_fetch_add_explicit(&m->waiters, 1, memory_order_seq_cst);
    int rc;
    for (;;) {
        w = atomic_load_explicit(&m->word, memory_order_seq_cst);
        if (w != seen) {
            rc = 0;
            break;
        }
        if (tsp && cairn__mono_ns() >= deadline) {
            rc = CAIRN_ETIMEOUT;
            count(&m->c.wait_timeouts);
            break;
        }
        /* EAGAIN (the low half already differs), EINTR, ETIMEDOUT and
         * wake-ups all come back to the re-read above. */
        syscall(SYS_futex, futex_word(m),
                FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, (uint32_t)seen, tsp,
                NULL, FUTEX_BITSET_MATCH_ANY);
    }
    /* Relaxed: a fire that still sees this waiter only makes one
     * unneeded wake call. */
    atomic_fetch_sub_explicit(&m->waiters, 1, memory_order_relaxed);
    *now = w;
    return rc;
}

/* ---- the twin ----------------------------------------------------------- */

static int mu_fire(cairn_fsm_t *m, uint32_t trig, const void *arg,
                   const void *context, cairn_fsm_result_t *res)
{
    const cairn_fsm_def_t *def = m->def;
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    /* Relaxed: every access to the twin's word is under the mutex. */
    uint64_t w = atomic_load_explicit(&m->word, memory_order_relaxed);
    uint32_t from = cairn_fsm_word_state(w);
    size_t cell = (size_t)from * def->ntriggers + trig;
    uint32_t to = def->next[cell];
    res->from = from;
    res->word = w;
    if (to == CAIRN__FSM_NONE) {
        count(&m->c.invalid);
        rc = CAIRN_EFSM_INVALID_TRANSITION;
    } else if (def->guards && def->guards[cell] &&
               def->guards[cell](m->guard_ctx, from, trig, arg) != 0) {
        count(&m->c.guard_rejected);
        rc = CAIRN_EFSM_GUARD_REJECTED;
    } else {
        uint64_t nw = ((uint64_t)to << CAIRN_FSM_VERSION_BITS) |
                      ((w + 1) & CAIRN_FSM_VERSION_MASK);
        atomic_store_explicit(&m->word, nw, memory_order_relaxed);
        res->to = to;
        res->word = nw;
        if (context) {
            memcpy(m->mu_ctx, context, m->context_size);
            m->mu_ctx_word = nw;
        }
        if (m->mu_waiters) {
            count(&m->c.wake_calls);
            pthread_cond_broadcast(&m->cv);
        }
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mu_wait(cairn_fsm_t *m, uint64_t seen, uint64_t timeout_ns,
                   uint64_t *now)
{
    struct timespec ts;
    int rc = 0;
    if (timeout_ns != UINT64_MAX && timeout_ns != 0) {
        uint64_t deadline = cairn__mono_ns() + timeout_ns;
        ts.tv_sec = (time_t)(deadline / 1000000000u);
        ts.tv_nsec = (long)(deadline % 1000000000u);
    }
    pthread_mutex_lock(&m->mu);
    uint64_t w = atomic_load_explicit(&m->word, memory_order_relaxed);
    if (w == seen && timeout_ns != 0) {
        count(&m->c.waits);
        m->mu_waiters++;
        while ((w = atomic_load_explicit(&m->word, memory_order_relaxed)) ==
               seen) {
            int e = timeout_ns == UINT64_MAX
                        ? pthread_cond_wait(&m->cv, &m->mu)
                        : pthread_cond_timedwait(&m->cv, &m->mu, &ts);
            if (e == ETIMEDOUT) {
                w = atomic_load_explicit(&m->word, memory_order_relaxed);
                if (w == seen)
                    count(&m->c.wait_timeouts);
                break;
            }
        }
        m->mu_waiters--;
    }
    if (w == seen)
        rc = CAIRN_ETIMEOUT;
    pthread_mutex_unlock(&m->mu);
    *now = w;
    return rc;
}

/* ---- the interface ------------------------------------------------------- */

static void record_latency(cairn_fsm_t *m, uint64_t ns)
{
    /* Relaxed throughout: statistics, each counter exact on its own. */
    atomic_fetch_add_explicit(&m->c.lat_samples, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->c.lat_sum, ns, memory_order_relaxed);
    uint64_t cur = atomic_load_explicit(&m->c.lat_min, memory_order_relaxed);
    while (ns < cur &&
           !atomic_compare_exchange_weak_explicit(&m->c.lat_min, &cur, ns,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
    cur = atomic_load_explicit(&m->c.lat_max, memory_order_relaxed);
    while (ns > cur &&
           !atomic_compare_exchange_weak_explicit(&m->c.lat_max, &cur, ns,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
    unsigned b = 0;
    if (ns >= 32) {
        b = (unsigned)(63 - __builtin_clzll(ns)) - 4;
        if (b >= CAIRN_FSM_LATENCY_BUCKETS)
            b = CAIRN_FSM_LATENCY_BUCKETS - 1;
    }
    atomic_fetch_add_explicit(&m->c.lat_bucket[b], 1, memory_order_relaxed);
}

CAIRN_EXPORT int cairn_fsm_fire(cairn_fsm_t *m, uint32_t trigger,
                                const void *arg, const void *context,
                                size_t context_len, cairn_fsm_result_t *res)
{
    cairn_fsm_result_t scratch;
    if (!res)
        res = &scratch;
    if (context && context_len != m->context_size)
        return CAIRN_EBAD_OPTION;
    if (context && m->context_size == 0)
        context = NULL;
    if (trigger >= m->def->ntriggers) {
        count(&m->c.invalid);
        res->from = res->to = cairn_fsm_word_state(cairn_fsm_word(m));
        res->word = cairn_fsm_word(m);
        return CAIRN_EFSM_INVALID_TRANSITION;
    }
    int timed = (++fire_tick & m->sample_mask) == 0;
    uint64_t t0 = timed ? cairn__mono_ns() : 0;
    int rc = m->enhanced ? lf_fire(m, trigger, arg, context, res)
                         : mu_fire(m, trigger, arg, context, res);
    if (rc != 0)
        res->to = res->from;
    if (timed)
        record_latency(m, cairn__mono_ns() - t0);
    return rc;
}

CAIRN_EXPORT int cairn_fsm_fire_name(cairn_fsm_t *m, const char *trigger,
                                     size_t trigger_len, const void *arg,
                                     const void *context, size_t context_len,
                                     cairn_fsm_result_t *res)
{
    int t = cairn__fsm_find(&m->def->triggers, trigger, trigger_len);
    if (t < 0) {
        count(&m->c.unknown);
        return CAIRN_EFSM_UNKNOWN_NAME;
    }
    return cairn_fsm_fire(m, (uint32_t)t, arg, context, context_len, res);
}

CAIRN_EXPORT uint64_t cairn_fsm_word(const cairn_fsm_t *m)
{
    cairn_fsm_t *mm = (cairn_fsm_t *)m;
    if (m->enhanced)
        /* Acquire: pairs with the winning CAS (see lf_fire). */
        return atomic_load_explicit(&mm->word, memory_order_acquire);
    pthread_mutex_lock(&mm->mu);
    uint64_t w = atomic_load_explicit(&mm->word, memory_order_relaxed);
    pthread_mutex_unlock(&mm->mu);
    return w;
}

CAIRN_EXPORT int cairn_fsm_context(const cairn_fsm_t *m, void *buf,
                                   size_t len, uint64_t *word)
{
    if (len != m->context_size)
        return CAIRN_EBAD_OPTION;
    uint64_t words[CONTEXT_WORDS + 1];
    if (m->enhanced) {
        cairn_cell_load(&m->ctx, words, CONTEXT_WORDS + 1);
    } else {
        cairn_fsm_t *mm = (cairn_fsm_t *)m;
        pthread_mutex_lock(&mm->mu);
        words[0] = mm->mu_ctx_word;
        memcpy(&words[1], mm->mu_ctx, sizeof mm->mu_ctx);
        pthread_mutex_unlock(&mm->mu);
    }
    if (len)
        memcpy(buf, &words[1], len);
    if (word)
        *word = words[0];
    return 0;
}

CAIRN_EXPORT int cairn_fsm_wait_for_change(cairn_fsm_t *m, uint64_t seen,
                                           uint64_t timeout_ns,
                                           uint64_t *now)
{
    uint64_t scratch;
    if (!now)
        now = &scratch;
    return m->enhanced ? lf_wait(m, seen, timeout_ns, now)
                       : mu_wait(m, seen, timeout_ns, now);
}

CAIRN_EXPORT void cairn_fsm_stats(const cairn_fsm_t *m, cairn_fsm_stats_t *out)
{
    const fsm_counters_t *c = &m->c;
#define LOAD(f) atomic_load_explicit(&((fsm_counters_t *)c)->f, \
                                     memory_order_relaxed)
    memset(out, 0, sizeof *out);
    out->successes = cairn_fsm_word_version(cairn_fsm_word(m));
    out->invalid = LOAD(invalid);
    out->guard_rejected = LOAD(guard_rejected);
    out->unknown = LOAD(unknown);
    out->attempts =
        out->successes + out->invalid + out->guard_rejected + out->unknown;
    out->cas_retries = LOAD(cas_retries);
    out->context_skips = LOAD(context_skips);
    out->waits = LOAD(waits);
    out->wait_timeouts = LOAD(wait_timeouts);
    out->wake_calls = LOAD(wake_calls);
    out->latency_samples = LOAD(lat_samples);
    out->latency_sum_ns = LOAD(lat_sum);
    out->latency_max_ns = LOAD(lat_max);
    uint64_t mn = LOAD(lat_min);
    out->latency_min_ns = mn == UINT64_MAX ? 0 : mn;
    for (unsigned i = 0; i < CAIRN_FSM_LATENCY_BUCKETS; i++)
        out->latency_buckets[i] = LOAD(lat_bucket[i]);
#undef LOAD
}
