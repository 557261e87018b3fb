/*
 * bench_metrics.c — metrics benchmarks (issue 6).  Every figure is paired
 * with a baseline measured in the same run:
 *
 *   metrics.counter.inc            ns per inc, 1 thread, seqlock provider;
 *                                  baseline metrics.counter.inc.standard
 *   metrics.counter.inc.standard   the rwlock twin; baseline: a plain
 *                                  _Atomic fetch_add loop (the floor)
 *   metrics.histogram.observe      ns per observe, 1 thread, seqlock;
 *                                  baseline metrics.histogram.observe.standard
 *   metrics.counter.inc.2t         ns per inc as each of two threads sees it,
 *                                  both on one counter (sharded); baseline:
 *                                  two threads fetch_add'ing one _Atomic word
 *   metrics.histogram.read.seqlock.writer
 *                                  ns per consistent snapshot while another
 *                                  thread observes without pause; baseline
 *                                  metrics.histogram.read.rwlock.writer
 *   metrics.histogram.read.rwlock.writer
 *                                  the same on the rwlock provider; baseline:
 *                                  rwlock snapshots with no writer running
 *   metrics.histogram.read.seqlock ns per snapshot with no writer; baseline:
 *                                  rwlock snapshots with no writer
 *   metrics.export.10k             ms to export 10 000 counter series
 *                                  (2 labels) as Prometheus text, seqlock
 *                                  provider; baseline: the standard provider
 *
 * Threads are started together and measure their own elapsed time; the
 * per-operation figure of a multi-thread run is the mean over threads.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cairn/metrics.h"

static const double BOUNDS[] = {0.0001, 0.0005, 0.001, 0.005, 0.01,
                                0.05,   0.1,    0.5,   1,     5};

static cairn_metrics_t *make_reg(cairn_metrics_provider_t p)
{
    cairn_metrics_opts_t o = {0};
    o.provider = p;
    cairn_metrics_t *reg = NULL;
    if (cairn_metrics_create(&o, &reg) != 0) {
        fprintf(stderr, "cairn: bench metrics: cannot create a registry\n");
        abort();
    }
    return reg;
}

/* Pin the calling thread to one CPU (mod the CPUs online) so the two
 * threads of a contention benchmark really run at the same time instead of
 * taking turns on one core.  Best effort: a failure leaves it unpinned. */
static void pin_to_cpu(int cpu)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (int)n, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* ---- single thread --------------------------------------------------------- */

static double counter_inc_ns(cairn_metrics_provider_t p, uint64_t n)
{
    cairn_metrics_t *reg = make_reg(p);
    cairn_metrics_counter_t *c;
    cairn_metrics_counter(reg, "bench_total", "Bench.", &c);
    cairn_metrics_counter_inc(c); /* take a shard before timing */
    uint64_t t0 = cairn_bench_now_ns();
    for (uint64_t i = 0; i < n; i++)
        cairn_metrics_counter_inc(c);
    uint64_t t1 = cairn_bench_now_ns();
    CAIRN_BENCH_KEEP(cairn_metrics_counter_value(c));
    cairn_metrics_destroy(reg);
    return (double)(t1 - t0) / (double)n;
}

static double atomic_inc_ns(uint64_t n)
{
    static _Atomic uint64_t word;
    uint64_t t0 = cairn_bench_now_ns();
    for (uint64_t i = 0; i < n; i++)
        atomic_fetch_add_explicit(&word, 1, memory_order_relaxed);
    uint64_t t1 = cairn_bench_now_ns();
    CAIRN_BENCH_KEEP(atomic_load(&word));
    return (double)(t1 - t0) / (double)n;
}

static double observe_ns(cairn_metrics_provider_t p, uint64_t n)
{
    cairn_metrics_t *reg = make_reg(p);
    cairn_metrics_histogram_t *h;
    cairn_metrics_histogram(reg, "bench_seconds", "Bench.", BOUNDS, 10, &h);
    /* Values spread over the buckets, precomputed so the loop measures
     * observe and not the value generator. */
    double vals[64];
    for (int i = 0; i < 64; i++)
        vals[i] = (double)i * 0.02;
    uint64_t t0 = cairn_bench_now_ns();
    for (uint64_t i = 0; i < n; i++)
        cairn_metrics_histogram_observe(h, vals[i & 63]);
    uint64_t t1 = cairn_bench_now_ns();
    cairn_metrics_destroy(reg);
    return (double)(t1 - t0) / (double)n;
}

/* ---- two threads on one counter ------------------------------------------ */

typedef struct inc2 {
    int cpu;
    cairn_metrics_counter_t *c; /* NULL: plain atomic word */
    _Atomic uint64_t *word;
    uint64_t n;
    _Atomic int *ready;
    double ns;
    pthread_t th;
} inc2_t;

static void *inc2_thread(void *arg)
{
    inc2_t *t = arg;
    pin_to_cpu(t->cpu);
    if (t->c != NULL)
        cairn_metrics_counter_inc(t->c); /* take a shard before timing */
    atomic_fetch_add(t->ready, 1);
    while (atomic_load(t->ready) < 2)
        ;
    uint64_t t0 = cairn_bench_now_ns();
    if (t->c != NULL) {
        for (uint64_t i = 0; i < t->n; i++)
            cairn_metrics_counter_inc(t->c);
    } else {
        for (uint64_t i = 0; i < t->n; i++)
            atomic_fetch_add_explicit(t->word, 1, memory_order_relaxed);
    }
    t->ns = (double)(cairn_bench_now_ns() - t0) / (double)t->n;
    return NULL;
}

static double inc_2t_ns(cairn_metrics_counter_t *c, uint64_t n)
{
    static _Atomic uint64_t word;
    _Atomic int ready = 0;
    inc2_t t[2];
    for (int i = 0; i < 2; i++) {
        t[i] = (inc2_t){
            .cpu = i, .c = c, .word = &word, .n = n, .ready = &ready};
        pthread_create(&t[i].th, NULL, inc2_thread, &t[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i].th, NULL);
    return (t[0].ns + t[1].ns) / 2;
}

/* ---- snapshot reads while a writer observes -------------------------------- */

typedef struct rw_ctx {
    cairn_metrics_histogram_t *h;
    _Atomic int stop;
    _Atomic int writing;
} rw_ctx_t;

static void *observer_thread(void *arg)
{
    rw_ctx_t *c = arg;
    uint64_t i = 0;
    pin_to_cpu(1);
    atomic_store(&c->writing, 1);
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed))
        cairn_metrics_histogram_observe(c->h, (double)(i++ & 63) * 0.02);
    return NULL;
}

typedef struct reader_job {
    rw_ctx_t *ctx;
    uint64_t n;
    double ns;
} reader_job_t;

/* The measuring reader runs in its own thread pinned to CPU 0 (the
 * caller's affinity stays untouched). */
static void *reader_thread(void *arg)
{
    reader_job_t *j = arg;
    pin_to_cpu(0);
    cairn_metrics_histogram_snapshot_t s;
    uint64_t seen = 0;
    uint64_t t0 = cairn_bench_now_ns();
    for (uint64_t i = 0; i < j->n; i++) {
        cairn_metrics_histogram_snapshot(j->ctx->h, &s);
        seen += s.count;
    }
    uint64_t t1 = cairn_bench_now_ns();
    CAIRN_BENCH_KEEP(seen);
    j->ns = (double)(t1 - t0) / (double)j->n;
    return NULL;
}

static double read_ns(cairn_metrics_provider_t p, int with_writer, uint64_t n,
                      double *retries_per_read)
{
    cairn_metrics_t *reg = make_reg(p);
    rw_ctx_t c = {0};
    cairn_metrics_histogram(reg, "bench_seconds", "Bench.", BOUNDS, 10, &c.h);
    pthread_t w, r;
    if (with_writer) {
        pthread_create(&w, NULL, observer_thread, &c);
        while (!atomic_load(&c.writing))
            ;
    }
    reader_job_t job = {.ctx = &c, .n = n};
    pthread_create(&r, NULL, reader_thread, &job);
    pthread_join(r, NULL);
    if (with_writer) {
        atomic_store(&c.stop, 1);
        pthread_join(w, NULL);
    }
    cairn_metrics_read_stats_t st;
    cairn_metrics_read_stats(reg, &st);
    *retries_per_read = st.reads ? (double)st.retries / (double)st.reads : 0;
    cairn_metrics_destroy(reg);
    return job.ns;
}

/* ---- export ------------------------------------------------------------------- */

static double export_10k_ms(cairn_metrics_provider_t p, int rounds)
{
    cairn_metrics_t *reg = make_reg(p);
    static const char *const names[] = {"route", "status"};
    cairn_metrics_desc_t d = {.type = CAIRN_METRICS_COUNTER,
                              .name = "bench_http_requests_total",
                              .help = "Requests by route and status.",
                              .label_names = names,
                              .label_count = 2};
    cairn_metrics_family_t *fam;
    cairn_metrics_register(reg, &d, &fam);
    for (int i = 0; i < 10000; i++) {
        char route[32], status[8];
        snprintf(route, sizeof(route), "/v1/streams/s%d/events", i / 5);
        snprintf(status, sizeof(status), "%d", 200 + i % 5);
        const char *const v[] = {route, status};
        cairn_metrics_counter_t *c;
        cairn_metrics_counter_child(fam, v, &c);
        cairn_metrics_counter_add(c, (uint64_t)i * 7919);
    }
    cairn_metrics_buf_t buf = {0};
    cairn_metrics_export(reg, CAIRN_METRICS_PROMETHEUS, &buf); /* warm */
    uint64_t t0 = cairn_bench_now_ns();
    for (int r = 0; r < rounds; r++) {
        buf.len = 0;
        cairn_metrics_export(reg, CAIRN_METRICS_PROMETHEUS, &buf);
    }
    uint64_t t1 = cairn_bench_now_ns();
    cairn_metrics_buf_free(&buf);
    cairn_metrics_destroy(reg);
    return (double)(t1 - t0) / 1e6 / rounds;
}

void cairn_bench_suite_metrics(cairn_bench_t *b);

void cairn_bench_suite_metrics(cairn_bench_t *b)
{
    const int quick = cairn_bench_quick(b);
    const uint64_t n = quick ? 5000000u : 50000000u;
    const uint64_t reads = quick ? 1000000u : 10000000u;
    const uint64_t std_n = n / 5; /* the lock twin is ~10x slower */

    cairn_bench_progress(b, "metrics: counter inc and histogram observe");
    double floor_ns = atomic_inc_ns(n);
    double inc_std = counter_inc_ns(CAIRN_METRICS_STANDARD, std_n);
    double inc_seq = counter_inc_ns(CAIRN_METRICS_SEQLOCK, n);
    cairn_bench_report(b, "metrics.counter.inc.standard", "ns", inc_std,
                       "_Atomic fetch_add loop", floor_ns);
    cairn_bench_report(b, "metrics.counter.inc", "ns", inc_seq,
                       "metrics.counter.inc.standard", inc_std);
    double obs_std = observe_ns(CAIRN_METRICS_STANDARD, std_n);
    double obs_seq = observe_ns(CAIRN_METRICS_SEQLOCK, n);
    cairn_bench_report(b, "metrics.histogram.observe.standard", "ns", obs_std,
                       NULL, 0);
    cairn_bench_report(b, "metrics.histogram.observe", "ns", obs_seq,
                       "metrics.histogram.observe.standard", obs_std);

    cairn_bench_progress(b, "metrics: two threads on one counter");
    double plain2 = inc_2t_ns(NULL, n / 2);
    cairn_metrics_t *reg = make_reg(CAIRN_METRICS_SEQLOCK);
    cairn_metrics_counter_t *c;
    cairn_metrics_counter(reg, "bench_total", "Bench.", &c);
    double seq2 = inc_2t_ns(c, n / 2);
    cairn_metrics_destroy(reg);
    reg = make_reg(CAIRN_METRICS_STANDARD);
    cairn_metrics_counter(reg, "bench_total", "Bench.", &c);
    double std2 = inc_2t_ns(c, std_n / 2);
    cairn_metrics_destroy(reg);
    cairn_bench_report(b, "metrics.counter.inc.2t.standard", "ns", std2, NULL,
                       0);
    cairn_bench_report(b, "metrics.counter.inc.2t", "ns", seq2,
                       "_Atomic fetch_add, 2 threads, one word", plain2);

    cairn_bench_progress(b, "metrics: snapshot reads while a writer observes");
    double retries, sq_retries;
    double rw_idle = read_ns(CAIRN_METRICS_STANDARD, 0, reads, &retries);
    double sq_idle = read_ns(CAIRN_METRICS_SEQLOCK, 0, reads, &retries);
    double rw_busy = read_ns(CAIRN_METRICS_STANDARD, 1, reads / 4, &retries);
    double sq_busy = read_ns(CAIRN_METRICS_SEQLOCK, 1, reads, &sq_retries);
    char note[96];
    snprintf(note, sizeof(note),
             "metrics: seqlock reads with a writer retried %.2f times each",
             sq_retries);
    cairn_bench_progress(b, note);
    cairn_bench_report(b, "metrics.histogram.read.seqlock", "ns", sq_idle,
                       "rwlock snapshot read, no writer", rw_idle);
    cairn_bench_report(b, "metrics.histogram.read.rwlock.writer", "ns", rw_busy,
                       "rwlock snapshot read, no writer", rw_idle);
    cairn_bench_report(b, "metrics.histogram.read.seqlock.writer", "ns",
                       sq_busy, "metrics.histogram.read.rwlock.writer",
                       rw_busy);

    cairn_bench_progress(b, "metrics: export 10 000 series");
    int rounds = quick ? 20 : 100;
    double ex_std = export_10k_ms(CAIRN_METRICS_STANDARD, rounds);
    double ex_seq = export_10k_ms(CAIRN_METRICS_SEQLOCK, rounds);
    cairn_bench_report(b, "metrics.export.10k", "ms", ex_seq,
                       "metrics.export.10k.standard", ex_std);
}
