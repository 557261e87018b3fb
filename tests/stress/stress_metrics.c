/*
 * stress_metrics.c — stress validators for the metrics providers and the
 * public seqlock.  Each test runs writers and readers concurrently and
 * checks an invariant on every single read (a reader thread records the
 * first violation; the main thread fails the test with it), then checks
 * exact totals after the threads are joined.  Labelled `concurrency`, so
 * they also run under ThreadSanitizer.
 *
 * The histogram invariant: bucket b (bounds 1, 2, 3, 4, +Inf) only ever
 * receives the value b + 0.5, so a consistent reading has
 *     count == sum of counts[b]   and   sum == sum of counts[b] * (b + 0.5)
 * exactly (halves add exactly in a double far beyond these counts).  A
 * reading that mixed two moments of a write would break one of them.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "cairn/metrics.h"
#include "cairn/seqlock.h"
#include "metrics/metrics_internal.h"
#include "test.h"

static const cairn_metrics_provider_t P_SEQLOCK = CAIRN_METRICS_SEQLOCK;
static const cairn_metrics_provider_t P_STANDARD = CAIRN_METRICS_STANDARD;

/* How long the time-bounded tests run (ms). */
#define RUN_MS 1500

static _Atomic int failed;
static char failure[512];

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
    int expected = 0;
    /* Only the first failure writes the message; acq_rel so the main
     * thread's acquire load of `failed` after join sees it anyway. */
    if (!atomic_compare_exchange_strong_explicit(
            &failed, &expected, 1, memory_order_acq_rel, memory_order_relaxed))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(failure, sizeof(failure), fmt, ap);
    va_end(ap);
}

static void reset_failure(void)
{
    atomic_store(&failed, 0);
    failure[0] = '\0';
}

static void assert_no_failure(void)
{
    if (atomic_load(&failed))
        fail_msg("%s", failure);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const double BOUNDS[] = {1, 2, 3, 4};

static cairn_metrics_t *new_reg(const cairn_metrics_provider_t *p)
{
    cairn_metrics_opts_t o = {0};
    o.provider = *p;
    cairn_metrics_t *reg = NULL;
    assert_int_equal(cairn_metrics_create(&o, &reg), 0);
    return reg;
}

/* The value observation i contributes: bucket i % 5 gets (i % 5) + 0.5. */
static double value_of(uint64_t i) { return (double)(i % 5) + 0.5; }

/* Check one reading against the invariant and against the previous reading
 * of the same reader (nothing may go backwards).  Returns 0 or reports. */
static int check_snapshot(const cairn_metrics_histogram_snapshot_t *s,
                          cairn_metrics_histogram_snapshot_t *prev)
{
    uint64_t total = 0;
    double expect_sum = 0;
    for (size_t b = 0; b <= 4; b++) {
        total += s->counts[b];
        expect_sum += (double)s->counts[b] * ((double)b + 0.5);
        if (prev != NULL && s->counts[b] < prev->counts[b]) {
            report("bucket %zu went back from %" PRIu64 " to %" PRIu64, b,
                   prev->counts[b], s->counts[b]);
            return -1;
        }
    }
    if (total != s->count) {
        report("inconsistent histogram: count %" PRIu64
               " but buckets add up to %" PRIu64,
               s->count, total);
        return -1;
    }
    if (s->sum != expect_sum) {
        report("inconsistent histogram: sum %.17g but buckets imply %.17g "
               "(count %" PRIu64 ")",
               s->sum, expect_sum, s->count);
        return -1;
    }
    if (prev != NULL)
        *prev = *s;
    return 0;
}

typedef struct hist_run {
    cairn_metrics_histogram_t *h;
    _Atomic int stop;
    _Atomic uint64_t reads;
    uint64_t written;
} hist_run_t;

static void *hist_writer(void *arg)
{
    hist_run_t *r = arg;
    uint64_t i = 0;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        cairn_metrics_histogram_observe(r->h, value_of(i));
        i++;
    }
    r->written = i;
    return NULL;
}

static void *hist_reader(void *arg)
{
    hist_run_t *r = arg;
    cairn_metrics_histogram_snapshot_t prev = {0}, s;
    uint64_t n = 0;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed) &&
           !atomic_load_explicit(&failed, memory_order_relaxed)) {
        cairn_metrics_histogram_snapshot(r->h, &s);
        n++;
        if (check_snapshot(&s, &prev) != 0)
            break;
    }
    atomic_fetch_add(&r->reads, n);
    return NULL;
}

/* One writer observing as fast as it can, 64 readers checking every
 * snapshot they take. */
static void readers64_one_writer(void **state)
{
    reset_failure();
    cairn_metrics_t *reg = new_reg(*state);
    hist_run_t r = {0};
    assert_int_equal(
        cairn_metrics_histogram(reg, "stress_seconds", "S.", BOUNDS, 4, &r.h),
        0);
    enum { READERS = 64 };
    pthread_t w, rd[READERS];
    assert_int_equal(pthread_create(&w, NULL, hist_writer, &r), 0);
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pthread_create(&rd[i], NULL, hist_reader, &r), 0);
    uint64_t end = now_ms() + RUN_MS;
    while (now_ms() < end && !atomic_load(&failed))
        usleep(10000);
    atomic_store(&r.stop, 1);
    pthread_join(w, NULL);
    for (int i = 0; i < READERS; i++)
        pthread_join(rd[i], NULL);
    assert_no_failure();

    cairn_metrics_histogram_snapshot_t s;
    cairn_metrics_histogram_snapshot(r.h, &s);
    assert_int_equal(check_snapshot(&s, NULL), 0);
    assert_int_equal(s.count, r.written);
    assert_true(r.written > 0);
    assert_true(atomic_load(&r.reads) >= READERS);
    cairn_metrics_read_stats_t st;
    cairn_metrics_read_stats(reg, &st);
    assert_true(st.reads >= atomic_load(&r.reads));
    assert_true(st.fast_path_reads <= st.reads);
    print_message("  %" PRIu64 " observations, %" PRIu64 " reads, %" PRIu64
                  " retries, %" PRIu64 " fast-path reads\n",
                  r.written, st.reads, st.retries, st.fast_path_reads);
    cairn_metrics_destroy(reg);
}

/* ---- write bursts ---------------------------------------------------------- */

enum { BURST_WRITERS = 8, BURSTS = 20, BURST_LEN = 2000 };

typedef struct burst_run {
    cairn_metrics_histogram_t *h;
    cairn_metrics_counter_t *c;
    _Atomic int writers_done;
    _Atomic int stop;
} burst_run_t;

static void *burst_writer(void *arg)
{
    burst_run_t *r = arg;
    for (int b = 0; b < BURSTS; b++) {
        for (uint64_t i = 0; i < BURST_LEN; i++) {
            cairn_metrics_histogram_observe(r->h, value_of(i));
            cairn_metrics_counter_inc(r->c);
        }
        usleep(500); /* quiet gap: the next burst starts cold */
    }
    atomic_fetch_add(&r->writers_done, 1);
    return NULL;
}

static void *burst_reader(void *arg)
{
    burst_run_t *r = arg;
    cairn_metrics_histogram_snapshot_t prev = {0}, s;
    uint64_t last = 0;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        cairn_metrics_histogram_snapshot(r->h, &s);
        if (check_snapshot(&s, &prev) != 0)
            break;
        uint64_t v = cairn_metrics_counter_value(r->c);
        if (v < last) {
            report("counter went back from %" PRIu64 " to %" PRIu64, last, v);
            break;
        }
        last = v;
    }
    return NULL;
}

static void write_bursts(void **state)
{
    reset_failure();
    cairn_metrics_t *reg = new_reg(*state);
    burst_run_t r = {0};
    assert_int_equal(
        cairn_metrics_histogram(reg, "burst_seconds", "B.", BOUNDS, 4, &r.h),
        0);
    assert_int_equal(cairn_metrics_counter(reg, "burst_total", "B.", &r.c), 0);
    pthread_t w[BURST_WRITERS], rd[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&rd[i], NULL, burst_reader, &r), 0);
    for (int i = 0; i < BURST_WRITERS; i++)
        assert_int_equal(pthread_create(&w[i], NULL, burst_writer, &r), 0);
    for (int i = 0; i < BURST_WRITERS; i++)
        pthread_join(w[i], NULL);
    atomic_store(&r.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(rd[i], NULL);
    assert_no_failure();

    const uint64_t per_bucket = (uint64_t)BURST_WRITERS * BURSTS * BURST_LEN / 5;
    cairn_metrics_histogram_snapshot_t s;
    cairn_metrics_histogram_snapshot(r.h, &s);
    assert_int_equal(s.count, (uint64_t)BURST_WRITERS * BURSTS * BURST_LEN);
    for (int b = 0; b <= 4; b++)
        assert_int_equal(s.counts[b], per_bucket);
    assert_true(s.sum == (double)per_bucket * (0.5 + 1.5 + 2.5 + 3.5 + 4.5));
    assert_int_equal(cairn_metrics_counter_value(r.c),
                     (uint64_t)BURST_WRITERS * BURSTS * BURST_LEN);
    cairn_metrics_destroy(reg);
}

/* ---- sequence wrap ----------------------------------------------------------- */

typedef struct wrap_run {
    cairn_metrics_histogram_t *h;
    uint64_t writes;
    _Atomic int stop;
} wrap_run_t;

static void *wrap_writer(void *arg)
{
    wrap_run_t *r = arg;
    for (uint64_t i = 0; i < r->writes; i++)
        cairn_metrics_histogram_observe(r->h, value_of(i));
    return NULL;
}

static void *wrap_reader(void *arg)
{
    wrap_run_t *r = arg;
    cairn_metrics_histogram_snapshot_t prev = {0}, s;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        cairn_metrics_histogram_snapshot(r->h, &s);
        if (check_snapshot(&s, &prev) != 0)
            break;
    }
    return NULL;
}

/* A histogram whose shard sequences start 1001 writes before 2^64: the
 * writer crosses the wrap while readers check every snapshot. */
static void histogram_sequence_wrap(void **state)
{
    (void)state;
    reset_failure();
    cairn_metrics_t *reg = new_reg(&P_SEQLOCK);
    wrap_run_t r = {.writes = 50000};
    assert_int_equal(
        cairn_metrics_histogram(reg, "wrap_seconds", "W.", BOUNDS, 4, &r.h), 0);
    const uint64_t start = UINT64_MAX - 2001; /* even */
    assert_int_equal(cairn__metrics_histogram_set_sequence(r.h, start), 0);
    pthread_t w, rd[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&rd[i], NULL, wrap_reader, &r), 0);
    assert_int_equal(pthread_create(&w, NULL, wrap_writer, &r), 0);
    pthread_join(w, NULL);
    atomic_store(&r.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(rd[i], NULL);
    assert_no_failure();

    /* The writer's shard moved 2 per write across the wrap; the others
     * were not written. */
    const cairn__hist_shard_t *shards = r.h->c.shards;
    int wrapped = 0;
    for (uint32_t i = 0; i <= r.h->c.shard_mask; i++) {
        uint64_t seq = cairn_seqlock_sequence(&shards[i].lock);
        if (seq == start + 2 * r.writes)
            wrapped++;
        else
            assert_true(seq == start);
    }
    assert_int_equal(wrapped, 1);
    assert_true(start + 2 * r.writes < start); /* it did wrap */
    cairn_metrics_histogram_snapshot_t s;
    cairn_metrics_histogram_snapshot(r.h, &s);
    assert_int_equal(s.count, r.writes);
    assert_int_equal(check_snapshot(&s, NULL), 0);
    cairn_metrics_destroy(reg);
}

/* ---- public seqlock: single writer across the wrap, multi-writer ----------- */

typedef struct cell {
    cairn_seqlock_t lock;
    _Atomic uint64_t a, b, c, d;
    _Atomic int stop;
    uint64_t writes;
} cell_t;

static void *cell_writer(void *arg)
{
    cell_t *x = arg;
    for (uint64_t i = 1; i <= x->writes; i++) {
        uint64_t tok = cairn_seqlock_write_begin(&x->lock);
        atomic_store_explicit(&x->a, i, memory_order_relaxed);
        atomic_store_explicit(&x->b, i * 3, memory_order_relaxed);
        atomic_store_explicit(&x->c, ~i, memory_order_relaxed);
        atomic_store_explicit(&x->d, i ^ 0x5555, memory_order_relaxed);
        cairn_seqlock_write_end(&x->lock, tok);
    }
    return NULL;
}

static void *cell_reader(void *arg)
{
    cell_t *x = arg;
    uint64_t last = 0;
    while (!atomic_load_explicit(&x->stop, memory_order_relaxed)) {
        uint64_t a, b, c, d, s;
        do {
            s = cairn_seqlock_read_begin(&x->lock);
            a = atomic_load_explicit(&x->a, memory_order_relaxed);
            b = atomic_load_explicit(&x->b, memory_order_relaxed);
            c = atomic_load_explicit(&x->c, memory_order_relaxed);
            d = atomic_load_explicit(&x->d, memory_order_relaxed);
        } while (cairn_seqlock_read_retry(&x->lock, s));
        if (a == 0 && b == 0 && c == 0 && d == 0)
            continue; /* before the first write */
        if (b != a * 3 || c != ~a || d != (a ^ 0x5555) || a < last) {
            report("torn seqlock read: a=%" PRIu64 " b=%" PRIu64 " c=%" PRIx64
                   " d=%" PRIx64 " (last a %" PRIu64 ")",
                   a, b, c, d, last);
            break;
        }
        last = a;
    }
    return NULL;
}

static void seqlock_wrap_concurrent(void **state)
{
    (void)state;
    reset_failure();
    static cell_t x;
    memset(&x, 0, sizeof(x));
    x.writes = 200000;
    const uint64_t start = UINT64_MAX - 2 * 1000 + 1; /* rounded down */
    cairn_seqlock_init(&x.lock, start);
    pthread_t w, rd[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&rd[i], NULL, cell_reader, &x), 0);
    assert_int_equal(pthread_create(&w, NULL, cell_writer, &x), 0);
    pthread_join(w, NULL);
    atomic_store(&x.stop, 1);
    for (int i = 0; i < 8; i++)
        pthread_join(rd[i], NULL);
    assert_no_failure();
    assert_true(cairn_seqlock_sequence(&x.lock) ==
                (start & ~(uint64_t)1) + 2 * x.writes);
    assert_true(cairn_seqlock_sequence(&x.lock) < 2 * x.writes);
}

typedef struct mw {
    cairn_seqlock_t lock;
    _Atomic uint64_t x, y;
    _Atomic int stop;
} mw_t;

enum { MW_WRITERS = 4, MW_WRITES = 50000 };

static void *mw_writer(void *arg)
{
    mw_t *m = arg;
    for (int i = 0; i < MW_WRITES; i++) {
        uint64_t tok = cairn_seqlock_write_begin_mw(&m->lock);
        /* Read-modify-write: exact only if writers exclude each other. */
        uint64_t x = atomic_load_explicit(&m->x, memory_order_relaxed) + 1;
        atomic_store_explicit(&m->x, x, memory_order_relaxed);
        atomic_store_explicit(&m->y, 2 * x, memory_order_relaxed);
        cairn_seqlock_write_end(&m->lock, tok);
    }
    return NULL;
}

static void *mw_reader(void *arg)
{
    mw_t *m = arg;
    while (!atomic_load_explicit(&m->stop, memory_order_relaxed)) {
        uint64_t x, y, s;
        do {
            s = cairn_seqlock_read_begin(&m->lock);
            x = atomic_load_explicit(&m->x, memory_order_relaxed);
            y = atomic_load_explicit(&m->y, memory_order_relaxed);
        } while (cairn_seqlock_read_retry(&m->lock, s));
        if (y != 2 * x) {
            report("torn multi-writer read: x=%" PRIu64 " y=%" PRIu64, x, y);
            break;
        }
    }
    return NULL;
}

static void seqlock_multi_writer(void **state)
{
    (void)state;
    reset_failure();
    static mw_t m;
    memset(&m, 0, sizeof(m));
    cairn_seqlock_init(&m.lock, 0);
    pthread_t w[MW_WRITERS], rd[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&rd[i], NULL, mw_reader, &m), 0);
    for (int i = 0; i < MW_WRITERS; i++)
        assert_int_equal(pthread_create(&w[i], NULL, mw_writer, &m), 0);
    for (int i = 0; i < MW_WRITERS; i++)
        pthread_join(w[i], NULL);
    atomic_store(&m.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(rd[i], NULL);
    assert_no_failure();
    assert_int_equal(atomic_load(&m.x), (uint64_t)MW_WRITERS * MW_WRITES);
    assert_int_equal(cairn_seqlock_sequence(&m.lock),
                     2 * (uint64_t)MW_WRITERS * MW_WRITES);
}

/* ---- counters under contention ----------------------------------------------- */

enum { CTR_THREADS = 4, CTR_INCS = 200000 };

typedef struct ctr_run {
    cairn_metrics_counter_t *c;
    _Atomic int stop;
} ctr_run_t;

static void *ctr_writer(void *arg)
{
    ctr_run_t *r = arg;
    for (int i = 0; i < CTR_INCS; i++)
        cairn_metrics_counter_inc(r->c);
    return NULL;
}

static void *ctr_reader(void *arg)
{
    ctr_run_t *r = arg;
    uint64_t last = 0;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        uint64_t v = cairn_metrics_counter_value(r->c);
        if (v < last || v > (uint64_t)CTR_THREADS * CTR_INCS) {
            report("counter read %" PRIu64 " after %" PRIu64, v, last);
            break;
        }
        last = v;
    }
    return NULL;
}

static void counter_contention(void **state)
{
    reset_failure();
    cairn_metrics_t *reg = new_reg(*state);
    ctr_run_t r = {0};
    assert_int_equal(cairn_metrics_counter(reg, "hot_total", "Hot.", &r.c), 0);
    pthread_t w[CTR_THREADS], rd;
    assert_int_equal(pthread_create(&rd, NULL, ctr_reader, &r), 0);
    for (int i = 0; i < CTR_THREADS; i++)
        assert_int_equal(pthread_create(&w[i], NULL, ctr_writer, &r), 0);
    for (int i = 0; i < CTR_THREADS; i++)
        pthread_join(w[i], NULL);
    atomic_store(&r.stop, 1);
    pthread_join(rd, NULL);
    assert_no_failure();
    assert_int_equal(cairn_metrics_counter_value(r.c),
                     (uint64_t)CTR_THREADS * CTR_INCS);
    cairn_metrics_destroy(reg);
}

/* ---- export while writing and registering ----------------------------------- */

typedef struct exp_run {
    cairn_metrics_t *reg;
    cairn_metrics_family_t *fam;
    _Atomic int stop;
} exp_run_t;

static void *exp_writer(void *arg)
{
    exp_run_t *r = arg;
    uint64_t i = 0;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        /* New children keep appearing while the exporter walks the family. */
        char v[16];
        snprintf(v, sizeof(v), "%" PRIu64, i % 200);
        const char *const vals[] = {v};
        cairn_metrics_histogram_t *h;
        if (cairn_metrics_histogram_child(r->fam, vals, &h) != 0) {
            report("histogram_child failed");
            break;
        }
        for (int k = 0; k < 50; k++)
            cairn_metrics_histogram_observe(h, value_of(i + (uint64_t)k));
        i++;
    }
    return NULL;
}

/* Every histogram in every export must have +Inf bucket == count. */
static int check_export(const char *text)
{
    const char *p = text;
    while ((p = strstr(p, "le=\"+Inf\"} ")) != NULL) {
        unsigned long long inf = strtoull(p + 11, NULL, 10);
        const char *cnt = strstr(p, "_count{");
        if (cnt == NULL)
            return -1;
        cnt = strchr(cnt, '}');
        unsigned long long count = strtoull(cnt + 2, NULL, 10);
        if (inf != count) {
            report("export: +Inf bucket %llu but count %llu", inf, count);
            return -1;
        }
        p = cnt;
    }
    return 0;
}

static void export_while_writing(void **state)
{
    reset_failure();
    cairn_metrics_t *reg = new_reg(*state);
    static const char *const k[] = {"k"};
    cairn_metrics_desc_t d = {.type = CAIRN_METRICS_HISTOGRAM,
                              .name = "exp_seconds",
                              .help = "E.",
                              .label_names = k,
                              .label_count = 1,
                              .buckets = BOUNDS,
                              .bucket_count = 4};
    exp_run_t r = {.reg = reg};
    assert_int_equal(cairn_metrics_register(reg, &d, &r.fam), 0);
    pthread_t w[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&w[i], NULL, exp_writer, &r), 0);
    uint64_t end = now_ms() + RUN_MS / 2;
    int exports = 0;
    cairn_metrics_buf_t buf = {0};
    static const cairn_metrics_format_t fmts[] = {
        CAIRN_METRICS_PROMETHEUS, CAIRN_METRICS_OPENMETRICS, CAIRN_METRICS_JSON};
    while (now_ms() < end && !atomic_load(&failed)) {
        buf.len = 0;
        cairn_metrics_format_t f = fmts[exports % 3];
        int rc = cairn_metrics_export(reg, f, &buf);
        if (rc != 0) {
            report("export failed: %d", rc);
            break;
        }
        if (f != CAIRN_METRICS_JSON && check_export(buf.data) != 0)
            break;
        exports++;
    }
    atomic_store(&r.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    cairn_metrics_buf_free(&buf);
    assert_no_failure();
    assert_true(exports > 0);
    cairn_metrics_destroy(reg);
}

#define BOTH(fn)                                                               \
    {#fn "_seqlock", fn, NULL, NULL, (void *)(uintptr_t)&P_SEQLOCK},           \
    {                                                                          \
        #fn "_standard", fn, NULL, NULL, (void *)(uintptr_t)&P_STANDARD        \
    }

static const struct CMUnitTest cases[] = {
    BOTH(readers64_one_writer),
    BOTH(write_bursts),
    BOTH(counter_contention),
    BOTH(export_while_writing),
    cmocka_unit_test(histogram_sequence_wrap),
    cmocka_unit_test(seqlock_wrap_concurrent),
    cmocka_unit_test(seqlock_multi_writer),
};

CAIRN_TEST_MAIN(cases)
