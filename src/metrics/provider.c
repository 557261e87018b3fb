/*
 * provider.c — the hot path and the consistent reads of both metric
 * providers: seqlock (enhanced) and standard (rwlock), plus the timer.
 *
 * DESIGN.
 *
 * Thread shards.  Each thread is given a shard number the first time it
 * touches a sharded metric (a process-wide round-robin ticket kept in
 * thread-local storage); it uses shard (ticket & mask) of every counter and
 * histogram.  With one shard per CPU, N threads started together land on N
 * different cache lines, so concurrent writers do not bounce one line.
 * Nothing depends on a shard having one writer: two threads that share a
 * shard stay correct, they only contend.
 *
 * Counters (seqlock provider).  A counter is one relaxed fetch-add on the
 * thread's shard; its value is the sum of relaxed loads of every shard.  A
 * counter is one word per shard, so no seqlock is needed: every shard only
 * grows, hence the sum a thread reads never decreases.
 *
 * Gauges (seqlock provider).  A gauge is one atomic word (i64, or a double's
 * bits).  It cannot be sharded: set() must replace the whole value.  set is
 * a relaxed store, add a relaxed fetch-add (i64) or a relaxed CAS loop
 * (double).  One word is always read consistently.
 *
 * Histograms (seqlock provider).  Each shard is a seqlock over its bucket
 * counts, count and sum (struct cairn__hist_shard).  An observation enters
 * the writer side with cairn_seqlock_write_begin_mw(): the CAS that makes
 * the sequence odd is also the lock that keeps two writers of the same
 * shard apart (rare: only threads whose tickets collide).  Inside, the
 * writer updates bucket, count and sum with relaxed loads and stores (no
 * other writer can be inside) and ends with the release store of the even
 * sequence.  A snapshot reads every shard with the seqlock read protocol,
 * retrying a shard while a writer is inside, and adds the shards up.  Each
 * shard read is self-consistent (its count equals the sum of its buckets
 * and its sum is the sum of exactly those observations), so the total is
 * too: a reader never sees buckets, sum and count disagree.  Readers take
 * no lock and write nothing but their own shard of the read statistics.
 *
 * Standard provider.  Every child has a pthread rwlock; updates take it
 * exclusively, reads shared.  The data under it is plain (non-atomic).
 *
 * Read statistics.  Every histogram snapshot adds 1 to `reads` (and the
 * retries it needed) on the reader's shard of reg->stats.  One read in
 * CAIRN_METRICS_READ_TIMING_EVERY per thread is timed with the monotonic
 * clock, because reading the clock costs more than the read itself.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics_internal.h"

/* 0 = not yet assigned; otherwise the thread's ticket + 1. */
static _Thread_local uint32_t tls_ticket;
static _Thread_local uint32_t tls_reads_until_timed;
static _Atomic uint32_t next_ticket;

static inline uint32_t thread_ticket(void)
{
    uint32_t t = tls_ticket;
    if (__builtin_expect(t == 0, 0)) {
        /* Relaxed: the ticket only spreads threads over shards; no data is
         * published through it. */
        t = atomic_fetch_add_explicit(&next_ticket, 1, memory_order_relaxed) +
            1;
        if (t == 0)
            t = 1;
        tls_ticket = t;
    }
    return t - 1;
}

static inline uint64_t dbl_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static inline double bits_dbl(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

/* ---- child state ------------------------------------------------------------ */

int cairn__metrics_child_init(struct cairn_metrics *reg, cairn__child_t *c,
                              cairn_metrics_type_t type)
{
    c->type = (uint8_t)type;
    c->seqlock = reg->provider == CAIRN_METRICS_SEQLOCK;
    c->shard_mask = reg->shards - 1;
    atomic_init(&c->word, type == CAIRN_METRICS_GAUGE_F64 ? dbl_bits(0.0) : 0);
    /* Writers first: updates are the hot path, and with readers preferred
     * (glibc's default) a stream of exporters could starve them. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&c->rw, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc != 0)
        return -rc;
    if (!c->seqlock) {
        c->std_value = type == CAIRN_METRICS_GAUGE_F64 ? dbl_bits(0.0) : 0;
        if (type == CAIRN_METRICS_HISTOGRAM) {
            c->std_hist = calloc(1, sizeof(*c->std_hist));
            if (c->std_hist == NULL)
                goto nomem;
        }
        return 0;
    }
    if (type == CAIRN_METRICS_COUNTER) {
        size_t size = sizeof(cairn__counter_shard_t) * reg->shards;
        cairn__counter_shard_t *s = aligned_alloc(CAIRN__CACHE_LINE, size);
        if (s == NULL)
            goto nomem;
        for (uint32_t i = 0; i < reg->shards; i++)
            atomic_init(&s[i].value, 0);
        c->shards = s;
    } else if (type == CAIRN_METRICS_HISTOGRAM) {
        size_t size = sizeof(cairn__hist_shard_t) * reg->shards;
        cairn__hist_shard_t *s = aligned_alloc(CAIRN__CACHE_LINE, size);
        if (s == NULL)
            goto nomem;
        for (uint32_t i = 0; i < reg->shards; i++) {
            cairn_seqlock_init(&s[i].lock, 0);
            atomic_init(&s[i].count, 0);
            atomic_init(&s[i].sum_bits, dbl_bits(0.0));
            for (size_t b = 0; b <= CAIRN_METRICS_BUCKETS_MAX; b++)
                atomic_init(&s[i].buckets[b], 0);
        }
        c->shards = s;
    }
    return 0;
nomem:
    pthread_rwlock_destroy(&c->rw);
    return -ENOMEM;
}

void cairn__metrics_child_fini(cairn__child_t *c)
{
    pthread_rwlock_destroy(&c->rw);
    free(c->shards);
    free(c->std_hist);
}

int cairn__metrics_histogram_set_sequence(cairn_metrics_histogram_t *h,
                                          uint64_t seq)
{
    cairn__child_t *c = &h->c;
    if (!c->seqlock)
        return CAIRN_EBAD_OPTION;
    cairn__hist_shard_t *s = c->shards;
    for (uint32_t i = 0; i <= c->shard_mask; i++)
        cairn_seqlock_init(&s[i].lock, seq);
    return 0;
}

/* ---- counters ------------------------------------------------------------- */

CAIRN_EXPORT void cairn_metrics_counter_add(cairn_metrics_counter_t *ctr,
                                            uint64_t n)
{
    cairn__child_t *c = &ctr->c;
    if (__builtin_expect(c->seqlock, 1)) {
        cairn__counter_shard_t *s = c->shards;
        /* Relaxed: the counter orders nothing else; readers sum shards. */
        atomic_fetch_add_explicit(&s[thread_ticket() & c->shard_mask].value, n,
                                  memory_order_relaxed);
        return;
    }
    pthread_rwlock_wrlock(&c->rw);
    c->std_value += n;
    pthread_rwlock_unlock(&c->rw);
}

CAIRN_EXPORT void cairn_metrics_counter_inc(cairn_metrics_counter_t *ctr)
{
    cairn_metrics_counter_add(ctr, 1);
}

uint64_t cairn__metrics_counter_read(cairn__child_t *c)
{
    if (c->seqlock) {
        cairn__counter_shard_t *s = c->shards;
        uint64_t total = 0;
        for (uint32_t i = 0; i <= c->shard_mask; i++)
            /* Relaxed: each shard is one word; coherence keeps every
             * shard's value non-decreasing for this reader. */
            total += atomic_load_explicit(&s[i].value, memory_order_relaxed);
        return total;
    }
    pthread_rwlock_rdlock(&c->rw);
    uint64_t v = c->std_value;
    pthread_rwlock_unlock(&c->rw);
    return v;
}

CAIRN_EXPORT uint64_t cairn_metrics_counter_value(cairn_metrics_counter_t *ctr)
{
    return cairn__metrics_counter_read(&ctr->c);
}

/* ---- integer gauges --------------------------------------------------------- */

CAIRN_EXPORT void cairn_metrics_gauge_set(cairn_metrics_gauge_t *g, int64_t v)
{
    cairn__child_t *c = &g->c;
    if (c->seqlock) {
        /* Relaxed: one self-contained word. */
        atomic_store_explicit(&c->word, (uint64_t)v, memory_order_relaxed);
        return;
    }
    pthread_rwlock_wrlock(&c->rw);
    c->std_value = (uint64_t)v;
    pthread_rwlock_unlock(&c->rw);
}

CAIRN_EXPORT void cairn_metrics_gauge_add(cairn_metrics_gauge_t *g,
                                          int64_t delta)
{
    cairn__child_t *c = &g->c;
    if (c->seqlock) {
        /* Relaxed: one self-contained word; unsigned wrap equals two's
         * complement addition. */
        atomic_fetch_add_explicit(&c->word, (uint64_t)delta,
                                  memory_order_relaxed);
        return;
    }
    pthread_rwlock_wrlock(&c->rw);
    c->std_value += (uint64_t)delta;
    pthread_rwlock_unlock(&c->rw);
}

CAIRN_EXPORT void cairn_metrics_gauge_inc(cairn_metrics_gauge_t *g)
{
    cairn_metrics_gauge_add(g, 1);
}

CAIRN_EXPORT void cairn_metrics_gauge_dec(cairn_metrics_gauge_t *g)
{
    cairn_metrics_gauge_add(g, -1);
}

int64_t cairn__metrics_gauge_read(cairn__child_t *c)
{
    if (c->seqlock)
        return (int64_t)atomic_load_explicit(&c->word, memory_order_relaxed);
    pthread_rwlock_rdlock(&c->rw);
    uint64_t v = c->std_value;
    pthread_rwlock_unlock(&c->rw);
    return (int64_t)v;
}

CAIRN_EXPORT int64_t cairn_metrics_gauge_value(cairn_metrics_gauge_t *g)
{
    return cairn__metrics_gauge_read(&g->c);
}

/* ---- floating gauges ------------------------------------------------------ */

CAIRN_EXPORT void cairn_metrics_gauge_f64_set(cairn_metrics_gauge_f64_t *g,
                                              double v)
{
    cairn__child_t *c = &g->c;
    if (c->seqlock) {
        atomic_store_explicit(&c->word, dbl_bits(v), memory_order_relaxed);
        return;
    }
    pthread_rwlock_wrlock(&c->rw);
    c->std_value = dbl_bits(v);
    pthread_rwlock_unlock(&c->rw);
}

CAIRN_EXPORT void cairn_metrics_gauge_f64_add(cairn_metrics_gauge_f64_t *g,
                                              double delta)
{
    cairn__child_t *c = &g->c;
    if (c->seqlock) {
        uint64_t old = atomic_load_explicit(&c->word, memory_order_relaxed);
        /* Relaxed CAS: the word is self-contained; a failed CAS reloads
         * `old` and the sum is recomputed from it. */
        while (!atomic_compare_exchange_weak_explicit(
            &c->word, &old, dbl_bits(bits_dbl(old) + delta),
            memory_order_relaxed, memory_order_relaxed))
            ;
        return;
    }
    pthread_rwlock_wrlock(&c->rw);
    c->std_value = dbl_bits(bits_dbl(c->std_value) + delta);
    pthread_rwlock_unlock(&c->rw);
}

double cairn__metrics_gauge_f64_read(cairn__child_t *c)
{
    if (c->seqlock)
        return bits_dbl(atomic_load_explicit(&c->word, memory_order_relaxed));
    pthread_rwlock_rdlock(&c->rw);
    uint64_t v = c->std_value;
    pthread_rwlock_unlock(&c->rw);
    return bits_dbl(v);
}

CAIRN_EXPORT double cairn_metrics_gauge_f64_value(cairn_metrics_gauge_f64_t *g)
{
    return cairn__metrics_gauge_f64_read(&g->c);
}

/* ---- histograms ------------------------------------------------------------- */

/* The first bucket whose bound is >= v; bucket_count (+Inf) if none, and
 * for NaN (every comparison with NaN is false). */
static inline size_t bucket_of(const struct cairn_metrics_family *f, double v)
{
    size_t i = 0;
    while (i < f->bucket_count && !(v <= f->bounds[i]))
        i++;
    return i;
}

CAIRN_EXPORT void cairn_metrics_histogram_observe(cairn_metrics_histogram_t *h,
                                                  double v)
{
    cairn__child_t *c = &h->c;
    size_t b = bucket_of(c->family, v);
    if (__builtin_expect(c->seqlock, 1)) {
        cairn__hist_shard_t *s =
            &((cairn__hist_shard_t *)c->shards)[thread_ticket() &
                                                 c->shard_mask];
        uint64_t token = cairn_seqlock_write_begin_mw(&s->lock);
        /* Relaxed loads and stores: the odd sequence keeps every other
         * writer out, and write_begin_mw's acquire made the previous
         * writer's stores visible; readers are ordered by the seqlock's
         * fences (release fence in write_begin_mw, release store in
         * write_end). */
        atomic_store_explicit(
            &s->buckets[b],
            atomic_load_explicit(&s->buckets[b], memory_order_relaxed) + 1,
            memory_order_relaxed);
        atomic_store_explicit(
            &s->count, atomic_load_explicit(&s->count, memory_order_relaxed) + 1,
            memory_order_relaxed);
        atomic_store_explicit(
            &s->sum_bits,
            dbl_bits(bits_dbl(atomic_load_explicit(&s->sum_bits,
                                                   memory_order_relaxed)) +
                     v),
            memory_order_relaxed);
        cairn_seqlock_write_end(&s->lock, token);
        return;
    }
    pthread_rwlock_wrlock(&c->rw);
    c->std_hist->buckets[b]++;
    c->std_hist->count++;
    c->std_hist->sum += v;
    pthread_rwlock_unlock(&c->rw);
}

static inline cairn__read_stats_shard_t *stats_shard(struct cairn_metrics *reg)
{
    return &reg->stats[thread_ticket() & (reg->shards - 1)];
}

void cairn__metrics_histogram_read(cairn__child_t *c,
                                   cairn_metrics_histogram_snapshot_t *out)
{
    const struct cairn_metrics_family *f = c->family;
    struct cairn_metrics *reg = f->reg;
    size_t nb = f->bucket_count;
    uint64_t retries = 0;
    uint64_t start_ns = 0;
    int timed = 0;

    if (tls_reads_until_timed == 0) {
        tls_reads_until_timed = CAIRN_METRICS_READ_TIMING_EVERY;
        timed = 1;
        start_ns = cairn__metrics_now_ns();
    }
    tls_reads_until_timed--;

    out->bucket_count = nb;
    memcpy(out->bounds, f->bounds, nb * sizeof(f->bounds[0]));
    /* Entries past +Inf are left as they are (documented): clearing them
     * compiled to `rep stos`, whose start-up cost was a third of a read. */

    if (c->seqlock) {
        const cairn__hist_shard_t *shards = c->shards;
        uint64_t total = 0;
        double sum = 0.0;
        for (uint32_t i = 0; i <= c->shard_mask; i++) {
            cairn__hist_shard_t *s = (cairn__hist_shard_t *)&shards[i];
            uint64_t counts[CAIRN_METRICS_BUCKETS_MAX + 1];
            uint64_t count, sum_bits;
            for (;;) {
                uint64_t seq = cairn_seqlock_read_begin(&s->lock);
                /* Relaxed atomic loads: validated by read_retry's acquire
                 * fence and sequence reload (see seqlock.h). */
                count = atomic_load_explicit(&s->count, memory_order_relaxed);
                sum_bits = atomic_load_explicit(&s->sum_bits,
                                                memory_order_relaxed);
                /* A shard nobody wrote to since creation: skip its
                 * buckets (still validated by the re-check below). */
                if (count != 0)
                    for (size_t b = 0; b <= nb; b++)
                        counts[b] = atomic_load_explicit(&s->buckets[b],
                                                         memory_order_relaxed);
                if (!cairn_seqlock_read_retry(&s->lock, seq))
                    break;
                retries++;
            }
            if (i == 0) {
                for (size_t b = 0; b <= nb; b++)
                    out->counts[b] = count != 0 ? counts[b] : 0;
            } else if (count != 0) {
                for (size_t b = 0; b <= nb; b++)
                    out->counts[b] += counts[b];
            }
            total += count;
            sum += bits_dbl(sum_bits);
        }
        out->count = total;
        out->sum = sum;
    } else {
        pthread_rwlock_rdlock(&c->rw);
        memcpy(out->counts, c->std_hist->buckets,
               (nb + 1) * sizeof(out->counts[0]));
        out->count = c->std_hist->count;
        out->sum = c->std_hist->sum;
        pthread_rwlock_unlock(&c->rw);
    }

    /* Relaxed: statistics order nothing; the exporter sums the shards. */
    cairn__read_stats_shard_t *st = stats_shard(reg);
    atomic_fetch_add_explicit(&st->reads, 1, memory_order_relaxed);
    if (retries != 0) {
        atomic_fetch_add_explicit(&st->slow_reads, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->retries, retries, memory_order_relaxed);
    }
    if (timed) {
        uint64_t ns = cairn__metrics_now_ns() - start_ns;
        atomic_fetch_add_explicit(&st->timed_reads, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->timed_read_ns, ns, memory_order_relaxed);
    }
}

CAIRN_EXPORT void
cairn_metrics_histogram_snapshot(cairn_metrics_histogram_t *h,
                                 cairn_metrics_histogram_snapshot_t *out)
{
    cairn__metrics_histogram_read(&h->c, out);
}

CAIRN_EXPORT void cairn_metrics_read_stats(const cairn_metrics_t *reg,
                                           cairn_metrics_read_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t slow = 0;
    for (uint32_t i = 0; i < reg->shards; i++) {
        cairn__read_stats_shard_t *s = &reg->stats[i];
        out->reads += atomic_load_explicit(&s->reads, memory_order_relaxed);
        slow += atomic_load_explicit(&s->slow_reads, memory_order_relaxed);
        out->retries += atomic_load_explicit(&s->retries, memory_order_relaxed);
        out->timed_reads +=
            atomic_load_explicit(&s->timed_reads, memory_order_relaxed);
        out->timed_read_ns +=
            atomic_load_explicit(&s->timed_read_ns, memory_order_relaxed);
    }
    /* Shards are loaded one by one, so `slow` can include a read whose
     * `reads` increment was loaded earlier; clamp rather than wrap. */
    out->fast_path_reads = out->reads > slow ? out->reads - slow : 0;
}

/* ---- timer ------------------------------------------------------------------ */

CAIRN_EXPORT void cairn_metrics_timer_start(cairn_metrics_timer_t *t,
                                            cairn_metrics_histogram_t *h)
{
    t->hist = h;
    t->start_ns = cairn__metrics_now_ns();
    atomic_init(&t->stopped, 0);
}

CAIRN_EXPORT int cairn_metrics_timer_stop(cairn_metrics_timer_t *t,
                                          double *seconds)
{
    double elapsed = (double)(cairn__metrics_now_ns() - t->start_ns) / 1e9;
    if (seconds != NULL)
        *seconds = elapsed;
    /* Exchange: exactly one stop, discard or cleanup sees 0 and records;
     * relaxed because the flag publishes nothing. */
    if (atomic_exchange_explicit(&t->stopped, 1, memory_order_relaxed) != 0)
        return 0;
    if (t->hist != NULL)
        cairn_metrics_histogram_observe(t->hist, elapsed);
    return 1;
}

CAIRN_EXPORT int cairn_metrics_timer_discard(cairn_metrics_timer_t *t)
{
    return atomic_exchange_explicit(&t->stopped, 1, memory_order_relaxed) == 0;
}

CAIRN_EXPORT void cairn_metrics_timer_cleanup(cairn_metrics_timer_t *t)
{
    cairn_metrics_timer_stop(t, NULL);
}
