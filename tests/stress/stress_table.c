/*
 * stress_table.c — the stream guard's stress validators (run under TSan in
 * make test), for both implementations.
 *
 * breaker_stress: THREADS threads record events with outcomes (30 %
 *   failures) on STREAMS streams while an injected clock moves 1 ms per
 *   record, so breakers open, half-open and close many times.  Checked:
 *   each stream's version equals the records accepted on it; successes +
 *   failures equal the outcomes recorded; every transition in $audit
 *   follows the breaker's table (closed -> open -> half-open -> closed or
 *   open), and none was suppressed.
 *
 * eviction_stress: THREADS threads append to NAMES streams through a
 *   table of 64, with idle_evict_secs = 1 and the clock moving, so streams
 *   are evicted and re-derived while other threads hold them.  Checked:
 *   every acknowledged append is in the log, and each stream's versions
 *   run 1..n exactly once.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "test.h"

#include "cairn/log.h"
#include "cairn/table.h"

#define THREADS 4
#define STREAMS 3
#define NAMES 256
#ifdef CAIRN_SANITIZED
#define RECORDS_PER_THREAD 6000
#define APPENDS_PER_THREAD 1500
#else
#define RECORDS_PER_THREAD 40000
#define APPENDS_PER_THREAD 4000
#endif

#define THREAD_CHECK(c)                                                        \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #c);                                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

static int ENHANCED = 1, MUTEX = 0;
static _Atomic uint64_t test_clock;

static uint64_t clock_fn(void *ctx)
{
    (void)ctx;
    return atomic_load(&test_clock);
}

typedef struct shared {
    cairn_log_t *log;
    _Atomic uint64_t accepted[NAMES];
    _Atomic uint64_t outcomes[NAMES];
} shared_t;

typedef struct worker {
    shared_t *sh;
    unsigned id;
} worker_t;

static const char *stream_name(unsigned k, char *buf, size_t cap)
{
    snprintf(buf, cap, "endpoint-%u", k);
    return buf;
}

static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void *record_worker(void *arg)
{
    worker_t *w = arg;
    uint64_t rng = 0x9e3779b97f4a7c15u * (w->id + 1);
    cairn_event_in_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = "request";
    ev.type_len = 7;
    char name[32];
    for (int i = 0; i < RECORDS_PER_THREAD; i++) {
        unsigned k = (unsigned)(next_rand(&rng) % STREAMS);
        cairn_outcome_t out = next_rand(&rng) % 10 < 3 ? CAIRN_OUTCOME_FAILURE
                                                       : CAIRN_OUTCOME_SUCCESS;
        stream_name(k, name, sizeof name);
        cairn_record_result_t r;
        int rc = cairn_table_record(w->sh->log, name, strlen(name), &ev, out,
                                    &r);
        THREAD_CHECK(rc == 0 || rc == CAIRN_EBREAKER_OPEN);
        if (rc == 0) {
            atomic_fetch_add(&w->sh->accepted[k], 1);
            atomic_fetch_add(&w->sh->outcomes[k], 1);
        } else {
            THREAD_CHECK(r.retry_after_ns > 0);
        }
        atomic_fetch_add(&test_clock, 1000000u);
    }
    return NULL;
}

static int find_str(const char *body, size_t len, const char *key, char *out,
                    size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = memmem(body, len, pat, strlen(pat));
    if (!p)
        return 0;
    p += strlen(pat);
    const char *e = memchr(p, '"', (size_t)(body + len - p));
    if (!e || (size_t)(e - p) >= cap)
        return 0;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = 0;
    return 1;
}

static void breaker_stress(void **state)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.enhanced_mode = *(int *)*state;
    o.buffer_size_mb = 64;
    o.breaker.failure_threshold = 3;
    o.breaker.failure_window_secs = 1;
    o.breaker.recovery_timeout_secs = 1;
    o.breaker.half_open_max_requests = 3;
    o.clock_ns = clock_fn;
    atomic_store(&test_clock, 1000000000000u);
    shared_t sh;
    memset(&sh, 0, sizeof sh);
    assert_int_equal(cairn_log_open(&o, &sh.log), 0);
    pthread_t th[THREADS];
    worker_t w[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        w[i].sh = &sh;
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, record_worker, &w[i]),
                         0);
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    char name[32];
    for (unsigned k = 0; k < STREAMS; k++) {
        stream_name(k, name, sizeof name);
        cairn_stream_state_t st;
        assert_int_equal(
            cairn_table_get_state(sh.log, name, strlen(name), &st), 0);
        assert_int_equal(st.version, atomic_load(&sh.accepted[k]));
        assert_int_equal(st.successes + st.failures,
                         atomic_load(&sh.outcomes[k]));
    }
    uint64_t written, suppressed;
    cairn_table_audit_counts(sh.log, &written, &suppressed);
    assert_int_equal(suppressed, 0);
    assert_true(written > 3 * STREAMS); /* breakers really cycled */

    /* Replay $audit: each stream's transitions follow the table.  Events
     * are appended after the CAS that decided them, so two racing threads
     * may write them out of order: the epoch each carries (+1 per
     * transition) gives the true order, and must run 1, 2, 3, ... */
    enum { MAXT = 4096 };
    static int kind[STREAMS][MAXT]; /* by epoch: 1 opened, 2 half, 3 closed */
    memset(kind, 0, sizeof kind);
    uint32_t top[STREAMS] = {0};
    cairn_read_filter_t f;
    memset(&f, 0, sizeof f);
    f.stream = "$audit";
    f.stream_len = 6;
    cairn_log_iter_t *it;
    cairn_event_t ev;
    assert_int_equal(cairn_log_iter_open(sh.log, &f, &it), 0);
    uint64_t seen = 0, closes = 0;
    while (cairn_log_iter_next(it, &ev) == 1) {
        char sname[64], num[32];
        assert_true(find_str(ev.payload, ev.payload_len, "stream", sname,
                             sizeof sname));
        unsigned k = (unsigned)atoi(sname + strlen("endpoint-"));
        assert_true(k < STREAMS);
        const char *ep = memmem(ev.payload, ev.payload_len, "\"epoch\":", 8);
        assert_non_null(ep);
        snprintf(num, sizeof num, "%.10s", ep + 8);
        uint32_t epoch = (uint32_t)strtoul(num, NULL, 10);
        assert_true(epoch >= 1 && epoch < MAXT);
        int kd = 0;
        if (ev.type_len == 14 && memcmp(ev.type, "breaker.opened", 14) == 0)
            kd = 1;
        else if (ev.type_len == 19 &&
                 memcmp(ev.type, "breaker.half_opened", 19) == 0)
            kd = 2;
        else if (ev.type_len == 14 &&
                 memcmp(ev.type, "breaker.closed", 14) == 0)
            kd = 3;
        else
            fail_msg("unexpected audit event %.*s", (int)ev.type_len,
                     ev.type);
        assert_int_equal(kind[k][epoch], 0); /* one event per epoch */
        kind[k][epoch] = kd;
        if (epoch > top[k])
            top[k] = epoch;
        closes += kd == 3;
        seen++;
    }
    cairn_log_iter_close(it);
    assert_int_equal(seen, written);
    assert_true(closes > 0);
    for (unsigned k = 0; k < STREAMS; k++) {
        int st = 3; /* closed */
        for (uint32_t e = 1; e <= top[k]; e++) {
            int kd = kind[k][e];
            assert_int_not_equal(kd, 0); /* no transition went unaudited */
            if (kd == 1) /* opened: from closed or half-open */
                assert_true(st == 3 || st == 2);
            else if (kd == 2) /* half-opened: from open */
                assert_int_equal(st, 1);
            else /* closed: from half-open */
                assert_int_equal(st, 2);
            st = kd;
        }
    }
    cairn_log_close(sh.log);
}

static void *append_worker(void *arg)
{
    worker_t *w = arg;
    uint64_t rng = 0x2545f4914f6cdd1du * (w->id + 1);
    cairn_event_in_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = "t";
    ev.type_len = 1;
    char name[32];
    for (int i = 0; i < APPENDS_PER_THREAD; i++) {
        /* Mostly a small working set, sometimes a cold name. */
        unsigned k = next_rand(&rng) % 4 ? (unsigned)(next_rand(&rng) % 8)
                                         : (unsigned)(next_rand(&rng) % NAMES);
        stream_name(k, name, sizeof name);
        cairn_append_result_t r;
        int rc;
        while ((rc = cairn_log_append(w->sh->log, name, strlen(name), &ev, 1,
                                      CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &r)) ==
               CAIRN_ETABLE_FULL) {
            atomic_fetch_add(&test_clock, 100000000u);
            sched_yield();
        }
        THREAD_CHECK(rc == 0);
        atomic_fetch_add(&w->sh->accepted[k], 1);
        atomic_fetch_add(&test_clock, 20000000u);
    }
    return NULL;
}

static void eviction_stress(void **state)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.enhanced_mode = *(int *)*state;
    o.buffer_size_mb = 16;
    o.max_endpoints = 64;
    o.idle_evict_secs = 1;
    o.clock_ns = clock_fn;
    atomic_store(&test_clock, 1000000000000u);
    shared_t sh;
    memset(&sh, 0, sizeof sh);
    assert_int_equal(cairn_log_open(&o, &sh.log), 0);
    pthread_t th[THREADS];
    worker_t w[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        w[i].sh = &sh;
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, append_worker, &w[i]),
                         0);
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_true(cairn_table_evictions(sh.log) > 0);

    uint64_t total = 0;
    char name[32];
    for (unsigned k = 0; k < NAMES; k++) {
        uint64_t want = atomic_load(&sh.accepted[k]);
        total += want;
        if (!want)
            continue;
        stream_name(k, name, sizeof name);
        cairn_read_filter_t f;
        memset(&f, 0, sizeof f);
        f.stream = name;
        f.stream_len = strlen(name);
        cairn_log_iter_t *it;
        cairn_event_t ev;
        assert_int_equal(cairn_log_iter_open(sh.log, &f, &it), 0);
        uint64_t v = 0;
        while (cairn_log_iter_next(it, &ev) == 1)
            assert_int_equal(ev.version, ++v);
        cairn_log_iter_close(it);
        assert_int_equal(v, want);
    }
    assert_int_equal(cairn_log_next_seq(sh.log) - 1, total);
    cairn_log_close(sh.log);
}

#define TWIN(fn)                                                               \
    {#fn "_lockfree", fn, NULL, NULL, &ENHANCED},                              \
        {#fn "_mutex", fn, NULL, NULL, &MUTEX}

static const struct CMUnitTest tests[] = {
    TWIN(breaker_stress),
    TWIN(eviction_stress),
};

CAIRN_TEST_MAIN(tests)
