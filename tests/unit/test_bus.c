/*
 * test_bus.c — the bus: synchronous handlers, subscribers catching up from
 * segments and crossing into the ring without gap or duplicate, lag
 * reports, wake-ups, pin release, shutdown.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#include "cairn/bus.h"
#include "cairn/log.h"

#define THREAD_CHECK(c)                                                        \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #c);                                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(p);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static cairn_log_t *open_mem(int enhanced)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.enhanced_mode = enhanced;
    o.buffer_size_mb = 4;
    cairn_log_t *log;
    assert_int_equal(cairn_log_open(&o, &log), 0);
    return log;
}

/* A durable log with a 1 MiB ring and 64 KiB segments, so readers cross
 * from the segments into the ring often. */
static cairn_log_t *open_disk(char *dir, int enhanced, uint64_t retention)
{
    snprintf(dir, 64, "/tmp/cairn-bus-XXXXXX");
    assert_non_null(mkdtemp(dir));
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.enhanced_mode = enhanced;
    o.buffer_size_mb = 1;
    o.data_dir = dir;
    o.segment_bytes = CAIRN_SEGMENT_BYTES_MIN;
    o.retention_bytes = retention;
    cairn_log_t *log;
    assert_int_equal(cairn_log_open(&o, &log), 0);
    return log;
}

/* Append one event whose payload is "<stream>#<version>". */
static uint64_t append1(cairn_log_t *log, const char *stream, const char *type,
                        int64_t time_ns, cairn_durability_t d)
{
    char payload[300];
    cairn_append_result_t res;
    cairn_event_in_t ev = {.type = type, .type_len = strlen(type),
                           .time_ns = time_ns};
    ev.payload = payload;
    ev.payload_len = (size_t)snprintf(payload, sizeof payload, "%s", stream);
    int rc = cairn_log_append(log, stream, strlen(stream), &ev, 1,
                              CAIRN_EXPECT_ANY, d, &res);
    THREAD_CHECK(rc == 0);
    return res.first_seq;
}

/* ---- handlers ------------------------------------------------------------ */

typedef struct seen {
    uint64_t seqs[4096];
    size_t n;
} seen_t;

static void record_seq(void *ctx, const cairn_event_t *ev)
{
    seen_t *s = ctx;
    if (s->n < 4096)
        s->seqs[s->n++] = ev->seq;
}

static void handlers_see_every_matching_event_once(void **state)
{
    cairn_log_t *log = open_mem(1);
    cairn_bus_t *bus;
    assert_int_equal(cairn_bus_create(log, NULL, &bus), 0);
    static seen_t all, auth;
    memset(&all, 0, sizeof all);
    memset(&auth, 0, sizeof auth);
    int id_all, id_auth;
    assert_int_equal(cairn_bus_add_handler(bus, NULL, record_seq, &all, &id_all),
                     0);
    cairn_read_filter_t f = {.stream = "auth:", .stream_len = 5,
                             .stream_prefix = 1};
    assert_int_equal(cairn_bus_add_handler(bus, &f, record_seq, &auth, &id_auth),
                     0);
    for (int i = 0; i < 300; i++)
        append1(log, i % 3 ? "auth:client-1" : "tools/call:client-1", "req", 0,
                CAIRN_DURABILITY_MEMORY);
    /* The appending thread dispatched everything already (one producer). */
    assert_int_equal(all.n, 300);
    assert_int_equal(auth.n, 200);
    for (size_t i = 0; i < all.n; i++)
        assert_int_equal(all.seqs[i], i + 1);
    for (size_t i = 1; i < auth.n; i++)
        assert_true(auth.seqs[i] > auth.seqs[i - 1]);
    assert_int_equal(cairn_bus_flush(bus), 301);
    /* Removed: never runs again. */
    assert_int_equal(cairn_bus_remove_handler(bus, id_auth), 0);
    assert_int_equal(cairn_bus_remove_handler(bus, id_auth), CAIRN_ENOT_FOUND);
    append1(log, "auth:client-1", "req", 0, CAIRN_DURABILITY_MEMORY);
    assert_int_equal(auth.n, 200);
    assert_int_equal(all.n, 301);
    cairn_bus_stats_t st;
    cairn_bus_stats(bus, &st);
    assert_int_equal(st.handlers, 1);
    assert_int_equal(st.dispatched, 301);
    cairn_bus_close(bus);
    cairn_log_close(log);
    (void)state;
}

static void second_bus_is_refused(void **state)
{
    cairn_log_t *log = open_mem(1);
    cairn_bus_t *bus, *bus2;
    assert_int_equal(cairn_bus_create(log, NULL, &bus), 0);
    assert_int_equal(cairn_bus_create(log, NULL, &bus2), CAIRN_EBUS_EXISTS);
    cairn_bus_opts_t o;
    cairn_bus_opts_init(&o);
    o.max_subscribers = CAIRN_BUS_SUBSCRIBERS_CAP + 1;
    cairn_log_t *log2 = open_mem(1);
    assert_int_equal(cairn_bus_create(log2, &o, &bus2), CAIRN_EBAD_OPTION);
    cairn_bus_close(bus);
    cairn_log_close(log);
    cairn_log_close(log2);
    (void)state;
}

/* ---- subscribers, single-threaded ----------------------------------------- */

static void subscribe_live_sees_only_new_events(void **state)
{
    int enhanced = *(int *)*state;
    cairn_log_t *log = open_mem(enhanced);
    cairn_bus_t *bus;
    assert_int_equal(cairn_bus_create(log, NULL, &bus), 0);
    for (int i = 0; i < 10; i++)
        append1(log, "a", "t", 0, CAIRN_DURABILITY_MEMORY);
    cairn_bus_sub_t *sub;
    assert_int_equal(cairn_bus_subscribe(bus, NULL, &sub), 0);
    cairn_event_t ev;
    assert_int_equal(cairn_bus_next(sub, &ev, 0, NULL), CAIRN_ETIMEOUT);
    append1(log, "b", "t", 0, CAIRN_DURABILITY_MEMORY);
    assert_int_equal(cairn_bus_next(sub, &ev, 0, NULL), 1);
    assert_int_equal(ev.seq, 11);
    assert_memory_equal(ev.stream, "b", 1);
    assert_int_equal(cairn_bus_position(sub), 12);
    cairn_bus_unsubscribe(sub);
    cairn_bus_close(bus);
    cairn_log_close(log);
}

static void subscribe_from_seq_and_from_time(void **state)
{
    int enhanced = *(int *)*state;
    cairn_log_t *log = open_mem(enhanced);
    cairn_bus_t *bus;
    assert_int_equal(cairn_bus_create(log, NULL, &bus), 0);
    const int64_t t0 = INT64_C(1700000000000000000);
    for (int i = 0; i < 20; i++)
        append1(log, "s", "t", t0 + i * 1000, CAIRN_DURABILITY_MEMORY);
    cairn_bus_sub_opts_t o = {.from_seq = 5};
    cairn_bus_sub_t *a, *b;
    assert_int_equal(cairn_bus_subscribe(bus, &o, &a), 0);
    o.from_seq = 0;
    o.from_time_ns = t0 + 12 * 1000; /* the 13th event, seq 13 */
    assert_int_equal(cairn_bus_subscribe(bus, &o, &b), 0);
    cairn_event_t ev;
    for (uint64_t s = 5; s <= 20; s++) {
        assert_int_equal(cairn_bus_next(a, &ev, 0, NULL), 1);
        assert_int_equal(ev.seq, s);
    }
    assert_int_equal(cairn_bus_next(a, &ev, 0, NULL), CAIRN_ETIMEOUT);
    assert_int_equal(cairn_bus_next(b, &ev, 0, NULL), 1);
    assert_int_equal(ev.seq, 13);
    /* After the start, later events come whatever their time. */
    append1(log, "s", "t", t0, CAIRN_DURABILITY_MEMORY);
    for (uint64_t s = 14; s <= 21; s++) {
        assert_int_equal(cairn_bus_next(b, &ev, 0, NULL), 1);
        assert_int_equal(ev.seq, s);
    }
    cairn_bus_unsubscribe(a);
    cairn_bus_unsubscribe(b);
    cairn_bus_close(bus);
    cairn_log_close(log);
}

static void filter_by_prefix_and_types(void **state)
{
    int enhanced = *(int *)*state;
    cairn_log_t *log = open_mem(enhanced);
    cairn_bus_t *bus;
    assert_int_equal(cairn_bus_create(log, NULL, &bus), 0);
    const char *types[] = {"auth.failure"};
    size_t lens[] = {12};
    cairn_bus_sub_opts_t o = {.stream = "auth:", .stream_len = 5,
                              .stream_prefix = 1, .types = types,
                              .type_lens = lens, .ntypes = 1, .from_seq = 1};
    cairn_bus_sub_t *sub;
    assert_int_equal(cairn_bus_subscribe(bus, &o, &sub), 0);
    append1(log, "auth:c1", "auth.success", 0, CAIRN_DURABILITY_MEMORY);
    append1(log, "auth:c1", "auth.failure", 0, CAIRN_DURABILITY_MEMORY);
    append1(log, "tools:c1", "auth.failure", 0, CAIRN_DURABILITY_MEMORY);
    append1(log, "auth:c2", "auth.failure", 0, CAIRN_DURABILITY_MEMORY);
    cairn_event_t ev;
    assert_int_equal(cairn_bus_next(sub, &ev, 0, NULL), 1);
    assert_int_equal(ev.seq, 2);
    assert_int_equal(cairn_bus_next(sub, &ev, 0, NULL), 1);
    assert_int_equal(ev.seq, 4);
    assert_int_equal(cairn_bus_next(sub, &ev, 0, NULL), CAIRN_ETIMEOUT);
    /* The cursor moved past the skipped events too. */
    assert_int_equal(cairn_bus_position(sub), 5);
    cairn_bus_unsubscribe(sub);
    cairn_bus_close(bus);
    cairn_log_close(log);
}

static void next_times_out_after_timeout(void **state)
{
    cairn_log_t *log = open_mem(1);
    cairn_bus_t *bus;
    assert_int_equal(cairn_bus_create(log, NULL, &bus), 0);
    cairn_bus_sub_t *sub;
    assert_int_equal(cairn_bus_subscribe(bus, NULL, &sub), 0);
    cairn_event_t ev;
    uint64_t t = now_ns();
    assert_int_equal(cairn_bus_next(sub, &ev, 30000000, NULL), CAIRN_ETIMEOUT);
    uint64_t took = now_ns() - t;
    assert_true(took >= 29000000u);
    assert_true(took < 2000000000u);
    cairn_bus_unsubscribe(sub);
    cairn_bus_close(bus);
    cairn_log_close(log);
    (void)state;
}

/* Released events (in-memory log) are reported, with the exact count. */
static void lagged_subscriber_told_exactly_how_many(void **state)
{
    int enhanced = *(int *)*state;
    cairn_log_t *log = open_mem(enhanced);
    cairn_bus_t *bus;
    assert_int_equal(cairn_bus_create(log, NULL, &bus), 0);
    cairn_bus_sub_opts_t o = {.from_seq = 1};
    cairn_bus_sub_t *sub;
    assert_int_equal(cairn_bus_subscribe(bus, &o, &sub), 0);
    for (int i = 0; i < 100; i++)
        append1(log, "s", "t", 0, CAIRN_DURABILITY_MEMORY);
    cairn_event_t ev;
    for (uint64_t s = 1; s <= 10; s++) {
        assert_int_equal(cairn_bus_next(sub, &ev, 0, NULL), 1);
        assert_int_equal(ev.seq, s);
    }
    /* Drop the pin as the keeper would, then let the owner release. */
    cairn_bus_unsubscribe(sub);
    o.from_seq = 11;
    assert_int_equal(cairn_bus_subscribe(bus, &o, &sub), 0);
    assert_int_equal(cairn_log_release(log, 40), 0);
    cairn_bus_lag_t lag;
    assert_int_equal(cairn_bus_next(sub, &ev, 0, &lag),
                     CAIRN_ESUBSCRIBER_LAGGED);
    assert_int_equal(lag.expected_seq, 11);
    assert_int_equal(lag.first_seq, 41);
    assert_int_equal(lag.missed, 30);
    for (uint64_t s = 41; s <= 100; s++) {
        assert_int_equal(cairn_bus_next(sub, &ev, 0, NULL), 1);
        assert_int_equal(ev.seq, s);
    }
    cairn_bus_sub_stats_t st;
    cairn_bus_sub_stats(sub, &st);
    assert_int_equal(st.missed, 30);
    assert_int_equal(st.lag_notices, 1);
    assert_int_equal(st.delivered, 60);
    cairn_bus_unsubscribe(sub);
    cairn_bus_close(bus);
    cairn_log_close(log);
}

/* Retention (durable log) removed the start: told, then delivery goes on
 * from the oldest kept seq, into the ring, without gap. */
static void lagged_behind_retention_durable(void **state)
{
    int enhanced = *(int *)*state;
    char dir[64];
    cairn_log_t *log = open_disk(dir, enhanced, 3 * CAIRN_SEGMENT_BYTES_MIN);
    cairn_bus_t *bus;
    assert_int_equal(cairn_bus_create(log, NULL, &bus), 0);
    for (int i = 0; i < 5000; i++)
        append1(log, "stream-with-a-longer-name", "t", 0, CAIRN_DURABILITY_OS);
    uint64_t first = cairn_log_first_seq(log);
    assert_true(first > 1);
    cairn_bus_sub_opts_t o = {.from_seq = 1};
    cairn_bus_sub_t *sub;
    assert_int_equal(cairn_bus_subscribe(bus, &o, &sub), 0);
    cairn_bus_lag_t lag;
    cairn_event_t ev;
    assert_int_equal(cairn_bus_next(sub, &ev, 0, &lag),
                     CAIRN_ESUBSCRIBER_LAGGED);
    assert_int_equal(lag.expected_seq, 1);
    assert_true(lag.first_seq >= first);
    assert_int_equal(lag.missed, lag.first_seq - 1);
    uint64_t want = lag.first_seq;
    for (;;) {
        int rc = cairn_bus_next(sub, &ev, 0, &lag);
        if (rc == CAIRN_ETIMEOUT)
            break;
        assert_int_equal(rc, 1);
        assert_int_equal(ev.seq, want);
        want++;
    }
    assert_int_equal(want, 5001);
    cairn_bus_unsubscribe(sub);
    cairn_bus_close(bus);
    cairn_log_close(log);
    rm_rf(dir);
}

/* ---- concurrency ----------------------------------------------------------- */

typedef struct producer {
    cairn_log_t *log;
    int id;
    int n;
    cairn_durability_t d;
} producer_t;

static void *produce(void *arg)
{
    producer_t *p = arg;
    char stream[32];
    snprintf(stream, sizeof stream, "p%d:stream", p->id);
    for (int i = 0; i < p->n; i++) {
        char payload[96];
        cairn_append_result_t res;
        cairn_event_in_t ev = {.type = "tick", .type_len = 4,
                               .payload = payload,
                               .payload_len = sizeof payload};
        memset(payload, 'a' + p->id, sizeof payload);
        int rc;
        while ((rc = cairn_log_append(p->log, stream, strlen(stream), &ev, 1,
                                      CAIRN_EXPECT_ANY, p->d, &res)) ==
               CAIRN_ELOG_FULL)
            sched_yield();
        THREAD_CHECK(rc == 0);
        if (i % 64 == 0)
            sched_yield(); /* let subscribers interleave on 2 cores */
    }
    return NULL;
}

typedef struct consumer {
    cairn_bus_t *bus;
    cairn_bus_sub_opts_t o;
    uint64_t expect_total; /* events to receive */
    uint64_t first_seq;    /* seq of the first one */
    uint64_t got;
    uint64_t last_version[4];
    int by_stream;         /* check per-stream versions instead of seqs */
    int slow;              /* pause now and then (lets the keeper unpin) */
} consumer_t;

static void *consume(void *arg)
{
    consumer_t *c = arg;
    cairn_bus_sub_t *sub;
    THREAD_CHECK(cairn_bus_subscribe(c->bus, &c->o, &sub) == 0);
    uint64_t want = c->first_seq;
    while (c->got < c->expect_total) {
        cairn_event_t ev;
        int rc = cairn_bus_next(sub, &ev, 5000000000, NULL);
        THREAD_CHECK(rc == 1);
        if (c->by_stream) {
            int p = ev.stream[1] - '0';
            THREAD_CHECK(p >= 0 && p < 4);
            THREAD_CHECK(ev.version == c->last_version[p] + 1);
            c->last_version[p] = ev.version;
        } else {
            THREAD_CHECK(ev.seq == want); /* no gap, no duplicate */
            want++;
        }
        THREAD_CHECK(ev.payload_len == 96);
        c->got++;
        if (c->slow && c->got % 2000 == 0)
            usleep(3000);
    }
    cairn_bus_sub_stats_t st;
    cairn_bus_sub_stats(sub, &st);
    THREAD_CHECK(st.delivered == c->expect_total);
    THREAD_CHECK(st.missed == 0);
    cairn_bus_unsubscribe(sub);
    return NULL;
}

/* Subscribers started at seq 1 after appends began, and live ones, under
 * concurrent producers on a durable log with a small ring and small
 * segments: every one sees every event once, in order. */
static void subscribe_while_appending_no_gap_no_duplicate(void **state)
{
    int enhanced = *(int *)*state;
    const int rounds = 3, per = 6000;
    for (int r = 0; r < rounds; r++) {
        char dir[64];
        cairn_log_t *log = open_disk(dir, enhanced, 0);
        cairn_bus_opts_t bo;
        cairn_bus_opts_init(&bo);
        bo.repin_events = 512;
        bo.park_ms = 5;
        cairn_bus_t *bus;
        assert_int_equal(cairn_bus_create(log, &bo, &bus), 0);
        producer_t pr[2] = {{log, 0, per, CAIRN_DURABILITY_MEMORY},
                            {log, 1, per, CAIRN_DURABILITY_OS}};
        pthread_t pt[2], ct[3];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&pt[i], NULL, produce, &pr[i]), 0);
        /* Let some events reach the segments first. */
        while (cairn_log_next_seq(log) < 2000)
            usleep(100);
        consumer_t c[3];
        memset(c, 0, sizeof c);
        c[0].bus = bus;
        c[0].o.from_seq = 1;
        c[0].first_seq = 1;
        c[0].expect_total = 2 * per;
        c[0].slow = 1;
        c[1].bus = bus;
        c[1].o.from_seq = 1;
        c[1].first_seq = 1;
        c[1].expect_total = 2 * per;
        /* A live one filtered by stream checks versions instead. */
        c[2].bus = bus;
        c[2].o.stream = "p1:stream";
        c[2].o.stream_len = 9;
        c[2].o.from_seq = 1;
        c[2].by_stream = 1;
        c[2].expect_total = per;
        for (int i = 0; i < 3; i++)
            assert_int_equal(pthread_create(&ct[i], NULL, consume, &c[i]), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(pt[i], NULL);
        for (int i = 0; i < 3; i++)
            pthread_join(ct[i], NULL);
        assert_int_equal(c[0].got, 2 * per);
        assert_int_equal(c[1].got, 2 * per);
        assert_int_equal(c[2].got, per);
        assert_int_equal(c[2].last_version[1], per);
        cairn_bus_close(bus);
        cairn_log_close(log);
        rm_rf(dir);
    }
}

typedef struct waiter {
    cairn_bus_sub_t *sub;
    int rc;
    uint64_t seq;
    uint64_t woke_ns;
} waiter_t;

static void *wait_one(void *arg)
{
    waiter_t *w = arg;
    cairn_event_t ev;
    w->rc = cairn_bus_next(w->sub, &ev, 10000000000, NULL);
    w->seq = w->rc == 1 ? ev.seq : 0;
    w->woke_ns = now_ns();
    return NULL;
}

static void sleeping_subscriber_woken_by_append(void **state)
{
    int enhanced = *(int *)*state;
    cairn_log_t *log = open_mem(enhanced);
    cairn_bus_t *bus;
    assert_int_equal(cairn_bus_create(log, NULL, &bus), 0);
    cairn_bus_sub_opts_t o = {.stream = "wanted", .stream_len = 6};
    waiter_t w = {0};
    assert_int_equal(cairn_bus_subscribe(bus, &o, &w.sub), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_one, &w), 0);
    usleep(50000);
    append1(log, "other", "t", 0, CAIRN_DURABILITY_MEMORY); /* no wake */
    usleep(20000);
    uint64_t t0 = now_ns();
    uint64_t seq = append1(log, "wanted", "t", 0, CAIRN_DURABILITY_MEMORY);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 1);
    assert_int_equal(w.seq, seq);
    assert_true(w.woke_ns - t0 < 1000000000u);
    cairn_bus_stats_t st;
    cairn_bus_stats(bus, &st);
    assert_int_equal(st.wakeups, 1); /* the "other" append woke nobody */
    cairn_bus_unsubscribe(w.sub);
    cairn_bus_close(bus);
    cairn_log_close(log);
}

static void shutdown_wakes_blocked_next(void **state)
{
    cairn_log_t *log = open_mem(1);
    cairn_bus_t *bus;
    assert_int_equal(cairn_bus_create(log, NULL, &bus), 0);
    waiter_t w = {0};
    assert_int_equal(cairn_bus_subscribe(bus, NULL, &w.sub), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_one, &w), 0);
    usleep(30000);
    uint64_t t0 = now_ns();
    cairn_bus_shutdown(bus);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, CAIRN_ECLOSED);
    assert_true(w.woke_ns - t0 < 1000000000u);
    cairn_bus_sub_t *s2;
    assert_int_equal(cairn_bus_subscribe(bus, NULL, &s2), CAIRN_ECLOSED);
    cairn_bus_unsubscribe(w.sub);
    cairn_bus_close(bus);
    cairn_log_close(log);
    (void)state;
}

/* A subscriber that stops calling next loses its ring pin after park_ms,
 * so producers can fill the ring; when it comes back it continues from
 * its cursor without gap (the records now come from the segments). */
static void parked_subscriber_gives_up_its_pin(void **state)
{
    int enhanced = *(int *)*state;
    char dir[64];
    cairn_log_t *log = open_disk(dir, enhanced, 0);
    cairn_bus_opts_t bo;
    cairn_bus_opts_init(&bo);
    bo.park_ms = 20;
    cairn_bus_t *bus;
    assert_int_equal(cairn_bus_create(log, &bo, &bus), 0);
    cairn_bus_sub_t *sub;
    assert_int_equal(cairn_bus_subscribe(bus, NULL, &sub), 0);
    append1(log, "s", "t", 0, CAIRN_DURABILITY_MEMORY);
    cairn_event_t ev;
    assert_int_equal(cairn_bus_next(sub, &ev, 0, NULL), 1);
    /* At the tail now: the iterator sits in the ring. */
    assert_int_equal(cairn_bus_next(sub, &ev, 0, NULL), CAIRN_ETIMEOUT);
    usleep(200000);
    cairn_bus_stats_t st;
    cairn_bus_stats(bus, &st);
    assert_true(st.unpins >= 1);
    /* More than a ring's worth (1 MiB) while parked: appends must not
     * stall on the parked subscriber. */
    producer_t p = {log, 0, 20000, CAIRN_DURABILITY_MEMORY};
    uint64_t t0 = now_ns();
    produce(&p);
    assert_true(now_ns() - t0 < 10000000000u);
    uint64_t want = 2;
    for (;;) {
        int rc = cairn_bus_next(sub, &ev, 0, NULL);
        if (rc == CAIRN_ETIMEOUT)
            break;
        assert_int_equal(rc, 1);
        assert_int_equal(ev.seq, want);
        want++;
    }
    assert_int_equal(want, 20002);
    cairn_bus_unsubscribe(sub);
    cairn_bus_close(bus);
    cairn_log_close(log);
    rm_rf(dir);
}

static int lockfree = 1, mutex_twin = 0;
#define TWIN(fn)                                                               \
    cmocka_unit_test_prestate(fn, &lockfree),                                  \
        {#fn "_mutex", fn, NULL, NULL, &mutex_twin}

static const struct CMUnitTest cases[] = {
    cmocka_unit_test(handlers_see_every_matching_event_once),
    cmocka_unit_test(second_bus_is_refused),
    TWIN(subscribe_live_sees_only_new_events),
    TWIN(subscribe_from_seq_and_from_time),
    TWIN(filter_by_prefix_and_types),
    cmocka_unit_test(next_times_out_after_timeout),
    TWIN(lagged_subscriber_told_exactly_how_many),
    TWIN(lagged_behind_retention_durable),
    TWIN(subscribe_while_appending_no_gap_no_duplicate),
    TWIN(sleeping_subscriber_woken_by_append),
    cmocka_unit_test(shutdown_wakes_blocked_next),
    TWIN(parked_subscriber_gives_up_its_pin),
};

CAIRN_TEST_MAIN(cases)
