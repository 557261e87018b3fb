/*
 * test_log.c — the log's conformance suite.  Every case runs against both
 * implementations: "<case>_lockfree" (enhanced_mode = 1) and
 * "<case>_mutex" (the twin); both must behave identically.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "test.h"

#include "cairn/guard.h"
#include "cairn/log.h"
#include "internal/table.h"
#include "log/log_internal.h"

static int ENHANCED = 1, MUTEX = 0;

static cairn_log_t *open_log(void **state, uint32_t mb, uint32_t timeout_ms)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.enhanced_mode = *(int *)*state;
    o.buffer_size_mb = mb;
    o.append_timeout_ms = timeout_ms;
    cairn_log_t *log = NULL;
    assert_int_equal(cairn_log_open(&o, &log), 0);
    return log;
}

static cairn_event_in_t ev_of(const char *type, const char *payload)
{
    cairn_event_in_t e;
    memset(&e, 0, sizeof e);
    e.type = type;
    e.type_len = strlen(type);
    e.payload = payload;
    e.payload_len = payload ? strlen(payload) : 0;
    return e;
}

static int append1(cairn_log_t *log, const char *stream, const char *type,
                   const char *payload, int64_t expected,
                   cairn_append_result_t *res)
{
    cairn_event_in_t e = ev_of(type, payload);
    return cairn_log_append(log, stream, strlen(stream), &e, 1, expected,
                            CAIRN_DURABILITY_MEMORY, res);
}

/* Read every event matching f into a malloc'd array of seqs. */
static size_t read_seqs(cairn_log_t *log, const cairn_read_filter_t *f,
                        uint64_t *out, size_t max)
{
    cairn_log_iter_t *it;
    assert_int_equal(cairn_log_iter_open(log, f, &it), 0);
    cairn_event_t ev;
    size_t n = 0;
    int rc;
    while ((rc = cairn_log_iter_next(it, &ev)) == 1) {
        assert_true(n < max);
        out[n++] = ev.seq;
    }
    assert_int_equal(rc, 0);
    cairn_log_iter_close(it);
    return n;
}

static void append_and_read_back(void **state)
{
    cairn_log_t *log = open_log(state, 1, 100);
    cairn_event_in_t e = ev_of("order.placed", "{\"qty\":3}");
    e.flags = CAIRN_EVENT_JSON;
    e.id = "req-1";
    e.id_len = 5;
    e.correlation_id = "corr";
    e.correlation_id_len = 4;
    e.causation_id = "cause!";
    e.causation_id_len = 6;
    e.time_ns = 1234567890123;
    cairn_append_result_t res;
    assert_int_equal(cairn_log_append(log, "orders:1", 8, &e, 1,
                                      CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     0);
    assert_int_equal(res.first_seq, 1);
    assert_int_equal(res.last_seq, 1);
    assert_int_equal(res.version, 1);
    assert_int_equal(res.duplicate, 0);
    assert_int_equal(cairn_log_next_seq(log), 2);

    cairn_log_iter_t *it;
    assert_int_equal(cairn_log_iter_open(log, NULL, &it), 0);
    cairn_event_t ev;
    assert_int_equal(cairn_log_iter_next(it, &ev), 1);
    assert_int_equal(ev.seq, 1);
    assert_int_equal(ev.version, 1);
    assert_int_equal(ev.time_ns, 1234567890123);
    assert_int_equal(ev.flags, CAIRN_EVENT_JSON);
    assert_memory_equal(ev.stream, "orders:1", 8);
    assert_int_equal(ev.stream_len, 8);
    assert_memory_equal(ev.type, "order.placed", 12);
    assert_memory_equal(ev.id, "req-1", 5);
    assert_memory_equal(ev.correlation_id, "corr", 4);
    assert_memory_equal(ev.causation_id, "cause!", 6);
    assert_int_equal(ev.payload_len, 9);
    assert_memory_equal(ev.payload, "{\"qty\":3}", 9);
    assert_int_equal(cairn_log_iter_next(it, &ev), 0);
    /* A later append is seen by the same iterator. */
    assert_int_equal(append1(log, "orders:1", "t", NULL, 1, &res), 0);
    assert_int_equal(cairn_log_iter_next(it, &ev), 1);
    assert_int_equal(ev.seq, 2);
    assert_int_equal(ev.payload_len, 0);
    assert_null(ev.id);
    cairn_log_iter_close(it);

    cairn_stream_info_t si;
    assert_int_equal(cairn_log_stream_info(log, "orders:1", 8, &si), 0);
    assert_int_equal(si.version, 2);
    assert_int_equal(si.first_seq, 1);
    assert_int_equal(si.last_seq, 2);
    assert_int_equal(cairn_log_stream_info(log, "nope", 4, &si),
                     CAIRN_ENOT_FOUND);
    /* Health reports the table and the ring. */
    cairn_log_health_t h;
    cairn_log_health(log, &h);
    assert_int_equal(h.next_seq, 3);
    assert_true(h.streams >= 1);
    assert_int_equal(h.ring_capacity, 1u << 20);
    assert_true(h.ring_bytes >= 2 * 56 && h.ring_bytes < 1024);
    assert_int_equal(cairn_log_release(log, 2), 0);
    cairn_log_health(log, &h);
    assert_int_equal(h.ring_bytes, 0);
    cairn_log_close(log);
}

static void time_defaults_to_now(void **state)
{
    cairn_log_t *log = open_log(state, 1, 100);
    cairn_append_result_t res;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t before = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    assert_int_equal(append1(log, "s", "t", "x", CAIRN_EXPECT_ANY, &res), 0);
    cairn_log_iter_t *it;
    cairn_event_t ev;
    assert_int_equal(cairn_log_iter_open(log, NULL, &it), 0);
    assert_int_equal(cairn_log_iter_next(it, &ev), 1);
    assert_true(ev.time_ns >= before);
    assert_true(ev.time_ns < before + 60 * INT64_C(1000000000));
    cairn_log_iter_close(it);
    cairn_log_close(log);
}

static void batch_is_consecutive(void **state)
{
    cairn_log_t *log = open_log(state, 1, 100);
    cairn_append_result_t res;
    assert_int_equal(append1(log, "other", "t", "x", CAIRN_EXPECT_ANY, &res),
                     0);
    cairn_event_in_t evs[5];
    for (int i = 0; i < 5; i++)
        evs[i] = ev_of("step", "payload");
    assert_int_equal(cairn_log_append(log, "batch", 5, evs, 5,
                                      CAIRN_EXPECT_NO_STREAM,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     0);
    assert_int_equal(res.first_seq, 2);
    assert_int_equal(res.last_seq, 6);
    assert_int_equal(res.version, 5);
    assert_int_equal(cairn_log_append(log, "batch", 5, evs, 3, 5,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     0);
    assert_int_equal(res.first_seq, 7);
    assert_int_equal(res.version, 8);

    cairn_read_filter_t f = {0};
    f.stream = "batch";
    f.stream_len = 5;
    cairn_log_iter_t *it;
    assert_int_equal(cairn_log_iter_open(log, &f, &it), 0);
    cairn_event_t ev;
    for (uint64_t v = 1; v <= 8; v++) {
        assert_int_equal(cairn_log_iter_next(it, &ev), 1);
        assert_int_equal(ev.version, v);
        assert_int_equal(ev.seq, v + 1);
        /* The back-link names the stream's previous event, across and
         * within batches. */
        assert_int_equal(ev.prev_seq, v == 1 ? 0 : v);
    }
    assert_int_equal(cairn_log_iter_next(it, &ev), 0);
    cairn_log_iter_close(it);
    cairn_log_close(log);
}

static void expected_version_rules(void **state)
{
    cairn_log_t *log = open_log(state, 1, 100);
    cairn_append_result_t res;
    /* exists on a new stream */
    assert_int_equal(append1(log, "s", "t", NULL, CAIRN_EXPECT_EXISTS, &res),
                     CAIRN_EVERSION_CONFLICT);
    assert_int_equal(res.actual_version, 0);
    /* exact 1 on a new stream */
    assert_int_equal(append1(log, "s", "t", NULL, 1, &res),
                     CAIRN_EVERSION_CONFLICT);
    assert_int_equal(append1(log, "s", "t", NULL, 0, &res), 0);
    assert_int_equal(res.version, 1);
    assert_int_equal(append1(log, "s", "t", NULL, CAIRN_EXPECT_NO_STREAM,
                             &res),
                     CAIRN_EVERSION_CONFLICT);
    assert_int_equal(res.actual_version, 1);
    assert_int_equal(append1(log, "s", "t", NULL, CAIRN_EXPECT_EXISTS, &res),
                     0);
    assert_int_equal(append1(log, "s", "t", NULL, 1, &res),
                     CAIRN_EVERSION_CONFLICT);
    assert_int_equal(res.actual_version, 2);
    assert_int_equal(append1(log, "s", "t", NULL, 2, &res), 0);
    assert_int_equal(append1(log, "s", "t", NULL, CAIRN_EXPECT_ANY, &res), 0);
    assert_int_equal(res.version, 4);
    assert_int_equal(append1(log, "s", "t", NULL, -4, &res),
                     CAIRN_EBAD_EXPECTED);
    /* Nothing was stored by the failures. */
    assert_int_equal(cairn_log_next_seq(log), 5);
    cairn_log_close(log);
}

static void version_overflow_refused(void **state)
{
    cairn_log_t *log = open_log(state, 1, 100);
    cairn_append_result_t res;
    assert_int_equal(append1(log, "big", "t", NULL, CAIRN_EXPECT_ANY, &res),
                     0);
    /* Put the stream just below the 40-bit maximum. */
    cairn__stream_t *s;
    assert_int_equal(cairn__table_find(log->table, "big", 3, 0, &s), 0);
    atomic_store(&s->state, CAIRN_VERSION_MAX - 1);
    assert_int_equal(append1(log, "big", "t", NULL, CAIRN_EXPECT_ANY, &res),
                     0);
    assert_int_equal(res.version, CAIRN_VERSION_MAX);
    uint64_t next = cairn_log_next_seq(log);
    assert_int_equal(append1(log, "big", "t", NULL, CAIRN_EXPECT_ANY, &res),
                     CAIRN_EVERSION_OVERFLOW);
    assert_int_equal(cairn_log_next_seq(log), next);
    cairn_log_close(log);
}

/* Each invalid field gets its own code, and nothing is stored. */
static void invalid_fields_rejected(void **state)
{
    cairn_log_t *log = open_log(state, 1, 100);
    cairn_append_result_t res;
    char long_name[300];
    memset(long_name, 'a', sizeof long_name);
    long_name[299] = 0;
    cairn_event_in_t e = ev_of("t", "p");

#define APPEND_S(s, len)                                                       \
    cairn_log_append(log, s, len, &e, 1, CAIRN_EXPECT_ANY,                     \
                     CAIRN_DURABILITY_MEMORY, &res)
    assert_int_equal(APPEND_S("", 0), CAIRN_ESTREAM_EMPTY);
    assert_int_equal(APPEND_S(NULL, 0), CAIRN_ESTREAM_EMPTY);
    assert_int_equal(APPEND_S(long_name, 256), CAIRN_ESTREAM_TOO_LONG);
    assert_int_equal(APPEND_S(long_name, 255), 0);
    assert_int_equal(APPEND_S("a\xc0\xafz", 4), CAIRN_ESTREAM_UTF8);
    assert_int_equal(APPEND_S("a\xed\xa0\x80", 4), CAIRN_ESTREAM_UTF8);
    assert_int_equal(APPEND_S("a\xe2\x82", 3), CAIRN_ESTREAM_UTF8);
    assert_int_equal(APPEND_S("a\nb", 3), CAIRN_ESTREAM_CONTROL);
    assert_int_equal(APPEND_S("a\x7f", 2), CAIRN_ESTREAM_CONTROL);
    assert_int_equal(APPEND_S("a\xc2\x85", 3), CAIRN_ESTREAM_CONTROL);
    assert_int_equal(APPEND_S("$audit", 6), CAIRN_ESTREAM_RESERVED);
    assert_int_equal(APPEND_S("caf\xc3\xa9:\xe2\x82\xac", 9), 0);

    const uint64_t stored = cairn_log_next_seq(log);
#define APPEND_E()                                                             \
    cairn_log_append(log, "s", 1, &e, 1, CAIRN_EXPECT_ANY,                     \
                     CAIRN_DURABILITY_MEMORY, &res)
    e = ev_of("", "p");
    assert_int_equal(APPEND_E(), CAIRN_ETYPE_EMPTY);
    e.type = long_name;
    e.type_len = 129;
    assert_int_equal(APPEND_E(), CAIRN_ETYPE_TOO_LONG);
    e.type = "\xff";
    e.type_len = 1;
    assert_int_equal(APPEND_E(), CAIRN_ETYPE_UTF8);
    e.type = "a\tb";
    e.type_len = 3;
    assert_int_equal(APPEND_E(), CAIRN_ETYPE_CONTROL);
    e = ev_of("t", "p");
    e.id = long_name;
    e.id_len = 129;
    assert_int_equal(APPEND_E(), CAIRN_EID_TOO_LONG);
    e.id = "\x80";
    e.id_len = 1;
    assert_int_equal(APPEND_E(), CAIRN_EID_UTF8);
    e = ev_of("t", "p");
    e.correlation_id = long_name;
    e.correlation_id_len = 129;
    assert_int_equal(APPEND_E(), CAIRN_EMETA_TOO_LONG);
    e = ev_of("t", "p");
    e.causation_id = "\xf8\x88\x80\x80\x80";
    e.causation_id_len = 5;
    assert_int_equal(APPEND_E(), CAIRN_EMETA_UTF8);
    e = ev_of("t", "p");
    e.payload = NULL;
    e.payload_len = 3;
    assert_int_equal(APPEND_E(), CAIRN_EPAYLOAD_NULL);
    e = ev_of("t", "p");
    e.time_ns = -1;
    assert_int_equal(APPEND_E(), CAIRN_ETIME_INVALID);

    void *big = calloc(1, CAIRN_MAX_EVENT_BYTES_DEFAULT + 1);
    e = ev_of("t", NULL);
    e.payload = big;
    e.payload_len = CAIRN_MAX_EVENT_BYTES_DEFAULT + 1;
    assert_int_equal(APPEND_E(), CAIRN_EPAYLOAD_TOO_LARGE);
    free(big);

    e = ev_of("t", "p");
    assert_int_equal(cairn_log_append(log, "s", 1, &e, 0, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     CAIRN_EBATCH_EMPTY);
    cairn_event_in_t *many =
        calloc(CAIRN_MAX_BATCH_EVENTS_DEFAULT + 1, sizeof *many);
    for (size_t i = 0; i <= CAIRN_MAX_BATCH_EVENTS_DEFAULT; i++)
        many[i] = e;
    assert_int_equal(cairn_log_append(log, "s", 1, many,
                                      CAIRN_MAX_BATCH_EVENTS_DEFAULT + 1,
                                      CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     CAIRN_EBATCH_TOO_LARGE);
    free(many);
    /* A single bad event anywhere fails the whole batch. */
    cairn_event_in_t two[2] = {ev_of("ok", "p"), ev_of("", "p")};
    assert_int_equal(cairn_log_append(log, "s", 1, two, 2, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     CAIRN_ETYPE_EMPTY);
    assert_int_equal(cairn_log_append(log, "s", 1, &e, 1, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_SYNC, &res),
                     CAIRN_EBAD_DURABILITY);
    assert_int_equal(cairn_log_append(log, "s", 1, &e, 1, CAIRN_EXPECT_ANY,
                                      (cairn_durability_t)7, &res),
                     CAIRN_EBAD_DURABILITY);
    assert_int_equal(cairn_log_next_seq(log), stored);
    cairn_log_close(log);
#undef APPEND_S
#undef APPEND_E
}

static void batch_larger_than_quarter_ring_refused(void **state)
{
    cairn_log_t *log = open_log(state, 1, 100);
    cairn_append_result_t res;
    static char payload[200000];
    cairn_event_in_t evs[2] = {ev_of("t", NULL), ev_of("t", NULL)};
    for (int i = 0; i < 2; i++) {
        evs[i].payload = payload;
        evs[i].payload_len = sizeof payload;
    }
    assert_int_equal(cairn_log_append(log, "s", 1, evs, 2, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     CAIRN_EBATCH_TOO_LARGE);
    assert_int_equal(cairn_log_append(log, "s", 1, evs, 1, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     0);
    cairn_log_close(log);
}

static void idempotent_append(void **state)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.enhanced_mode = *(int *)*state;
    o.buffer_size_mb = 1;
    o.idempotency_window = 2;
    cairn_log_t *log;
    assert_int_equal(cairn_log_open(&o, &log), 0);
    cairn_event_in_t e = ev_of("t", "p");
    cairn_append_result_t res, again;
    e.id = "A";
    e.id_len = 1;
    assert_int_equal(cairn_log_append(log, "s", 1, &e, 1,
                                      CAIRN_EXPECT_NO_STREAM,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     0);
    /* The retry gets the original answer, even though its expected version
     * no longer holds, and stores nothing. */
    assert_int_equal(cairn_log_append(log, "s", 1, &e, 1,
                                      CAIRN_EXPECT_NO_STREAM,
                                      CAIRN_DURABILITY_MEMORY, &again),
                     0);
    assert_int_equal(again.duplicate, 1);
    assert_int_equal(again.first_seq, res.first_seq);
    assert_int_equal(again.version, res.version);
    assert_int_equal(cairn_log_next_seq(log), 2);
    /* Same id on another stream is a different key. */
    assert_int_equal(cairn_log_append(log, "s2", 2, &e, 1, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     0);
    assert_int_equal(res.duplicate, 0);
    /* The window is 2: a third id pushes "A"@s out. */
    e.id = "B";
    assert_int_equal(cairn_log_append(log, "s", 1, &e, 1, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     0);
    e.id = "A";
    assert_int_equal(cairn_log_append(log, "s", 1, &e, 1, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     0);
    assert_int_equal(res.duplicate, 0);
    assert_int_equal(res.version, 3);
    cairn_log_close(log);
}

static void read_filters(void **state)
{
    cairn_log_t *log = open_log(state, 1, 100);
    cairn_append_result_t res;
    const char *streams[] = {"auth:c1", "auth:c2", "tools:c1", "auth:c1"};
    const char *types[] = {"login", "logout", "call", "logout"};
    for (int i = 0; i < 4; i++) {
        cairn_event_in_t e = ev_of(types[i], "x");
        e.time_ns = 1000 * (i + 1);
        assert_int_equal(cairn_log_append(log, streams[i], strlen(streams[i]),
                                          &e, 1, CAIRN_EXPECT_ANY,
                                          CAIRN_DURABILITY_MEMORY, &res),
                         0);
    }
    uint64_t seqs[8];
    cairn_read_filter_t f = {0};
    assert_int_equal(read_seqs(log, &f, seqs, 8), 4);
    f.stream = "auth:c1";
    f.stream_len = 7;
    assert_int_equal(read_seqs(log, &f, seqs, 8), 2);
    assert_int_equal(seqs[0], 1);
    assert_int_equal(seqs[1], 4);
    f.stream = "auth:";
    f.stream_len = 5;
    assert_int_equal(read_seqs(log, &f, seqs, 8), 0);
    f.stream_prefix = 1;
    assert_int_equal(read_seqs(log, &f, seqs, 8), 3);
    const char *want[] = {"logout"};
    size_t want_len[] = {6};
    f.types = want;
    f.type_lens = want_len;
    f.ntypes = 1;
    assert_int_equal(read_seqs(log, &f, seqs, 8), 2);
    assert_int_equal(seqs[0], 2);
    assert_int_equal(seqs[1], 4);
    memset(&f, 0, sizeof f);
    f.time_from_ns = 2000;
    f.time_to_ns = 4000;
    assert_int_equal(read_seqs(log, &f, seqs, 8), 2);
    assert_int_equal(seqs[0], 2);
    assert_int_equal(seqs[1], 3);
    memset(&f, 0, sizeof f);
    f.from_seq = 3;
    assert_int_equal(read_seqs(log, &f, seqs, 8), 2);
    assert_int_equal(seqs[0], 3);
    f.stream = "x";
    f.stream_len = 0;
    cairn_log_iter_t *it;
    assert_int_equal(cairn_log_iter_open(log, &f, &it), CAIRN_EBAD_FILTER);
    cairn_log_close(log);
}

static void release_then_expired(void **state)
{
    cairn_log_t *log = open_log(state, 1, 100);
    cairn_append_result_t res;
    for (int i = 0; i < 10; i++)
        assert_int_equal(append1(log, "s", "t", "x", CAIRN_EXPECT_ANY, &res),
                         0);
    assert_int_equal(cairn_log_first_seq(log), 1);
    assert_int_equal(cairn_log_release(log, 4), 0);
    assert_int_equal(cairn_log_first_seq(log), 5);
    cairn_read_filter_t f = {0};
    f.from_seq = 3;
    cairn_log_iter_t *it;
    assert_int_equal(cairn_log_iter_open(log, &f, &it), CAIRN_EEXPIRED);
    f.from_seq = 5;
    uint64_t seqs[16];
    assert_int_equal(read_seqs(log, &f, seqs, 16), 6);
    f.from_seq = 0;
    assert_int_equal(read_seqs(log, &f, seqs, 16), 6);
    assert_int_equal(seqs[0], 5);
    cairn_log_close(log);
}

/* Fill a 1 MiB ring: appends fail with CAIRN_ELOG_FULL after the timeout,
 * everything acknowledged is still there, and releasing makes room. */
static void full_ring_fails_then_recovers(void **state)
{
    cairn_log_t *log = open_log(state, 1, 20);
    static char payload[4000];
    memset(payload, 'z', sizeof payload - 1);
    cairn_append_result_t res;
    uint64_t acked = 0;
    int rc;
    for (;;) {
        rc = append1(log, "fill", "t", payload, CAIRN_EXPECT_ANY, &res);
        if (rc != 0)
            break;
        acked++;
    }
    assert_int_equal(rc, CAIRN_ELOG_FULL);
    assert_true(acked > 200 && acked < 300);
    assert_int_equal(cairn_log_next_seq(log), acked + 1);
    cairn_stream_info_t si;
    assert_int_equal(cairn_log_stream_info(log, "fill", 4, &si), 0);
    assert_int_equal(si.version, acked);

    /* Every acknowledged event is intact. */
    cairn_log_iter_t *it;
    cairn_event_t ev;
    assert_int_equal(cairn_log_iter_open(log, NULL, &it), 0);
    for (uint64_t s = 1; s <= acked; s++) {
        assert_int_equal(cairn_log_iter_next(it, &ev), 1);
        assert_int_equal(ev.seq, s);
        assert_int_equal(ev.version, s);
        assert_memory_equal(ev.payload, payload, sizeof payload - 1);
    }
    assert_int_equal(cairn_log_iter_next(it, &ev), 0);

    /* An open iterator at the start pins the space: releasing does not
     * help until it is closed. */
    cairn_log_iter_t *pin;
    assert_int_equal(cairn_log_iter_open(log, NULL, &pin), 0);
    cairn_log_iter_close(it);
    assert_int_equal(cairn_log_release(log, acked), 0);
    assert_int_equal(append1(log, "fill", "t", payload, CAIRN_EXPECT_ANY,
                             &res),
                     CAIRN_ELOG_FULL);
    cairn_log_iter_close(pin);
    assert_int_equal(append1(log, "fill", "t", payload, CAIRN_EXPECT_ANY,
                             &res),
                     0);
    assert_int_equal(res.first_seq, acked + 1);
    assert_int_equal(res.version, acked + 1);
    cairn_log_close(log);
}

/* Many laps around a 1 MiB ring with odd-sized records: records that start
 * near the end continue through the double mapping intact. */
static void wraps_many_laps(void **state)
{
    cairn_log_t *log = open_log(state, 1, 100);
    cairn_read_filter_t f = {0};
    cairn_log_iter_t *it;
    assert_int_equal(cairn_log_iter_open(log, &f, &it), 0);
    char payload[3001];
    cairn_append_result_t res;
    cairn_event_t ev;
    uint64_t next_read = 1;
    for (uint64_t i = 1; i <= 5000; i++) {
        size_t len = (size_t)(i * 7919 % 3000) + 1;
        for (size_t k = 0; k < len; k++)
            payload[k] = (char)('a' + (i + k) % 26);
        payload[len] = 0;
        assert_int_equal(append1(log, "lap", "t", payload, CAIRN_EXPECT_ANY,
                                 &res),
                         0);
        assert_int_equal(res.first_seq, i);
        while (cairn_log_iter_next(it, &ev) == 1) {
            assert_int_equal(ev.seq, next_read);
            size_t elen = (size_t)(ev.seq * 7919 % 3000) + 1;
            assert_int_equal(ev.payload_len, elen);
            for (size_t k = 0; k < elen; k++)
                assert_int_equal(((const char *)ev.payload)[k],
                                 (char)('a' + (ev.seq + k) % 26));
            next_read++;
        }
        if (i % 50 == 0)
            cairn_log_release(log, next_read - 1);
    }
    assert_int_equal(next_read, 5001);
    cairn_log_iter_close(it);
    cairn_log_close(log);
}

/* The claim word keeps seq mod 2^32 in its low half; crossing 2^32 (and
 * starting far above it) must not disturb seqs or positions. */
static void seq_crosses_32_bits(void **state)
{
    const uint64_t starts[] = {(UINT64_C(1) << 32) - 40,
                               (UINT64_C(5) << 32) - 3,
                               UINT64_C(0x7fffffffffffff00)};
    for (size_t k = 0; k < 3; k++) {
        cairn_log_opts_t o;
        cairn_log_opts_init(&o);
        o.enhanced_mode = *(int *)*state;
        o.buffer_size_mb = 1;
        o.first_seq = starts[k];
        cairn_log_t *log;
        assert_int_equal(cairn_log_open(&o, &log), 0);
        cairn_log_iter_t *it;
        assert_int_equal(cairn_log_iter_open(log, NULL, &it), 0);
        cairn_append_result_t res;
        cairn_event_t ev;
        cairn_event_in_t evs[3] = {ev_of("a", "1"), ev_of("b", "22"),
                                   ev_of("c", "333")};
        for (uint64_t i = 0; i < 100; i++) {
            assert_int_equal(cairn_log_append(log, "s", 1, evs, 3,
                                              CAIRN_EXPECT_ANY,
                                              CAIRN_DURABILITY_MEMORY, &res),
                             0);
            assert_int_equal(res.first_seq, starts[k] + 3 * i);
            for (int j = 0; j < 3; j++) {
                assert_int_equal(cairn_log_iter_next(it, &ev), 1);
                assert_int_equal(ev.seq, starts[k] + 3 * i + (uint64_t)j);
                assert_int_equal(ev.payload_len, (uint32_t)j + 1);
            }
        }
        assert_int_equal(cairn_log_next_seq(log), starts[k] + 300);
        cairn_log_iter_close(it);
        cairn_log_close(log);
    }
}

static void table_full_refuses_new_streams(void **state)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.enhanced_mode = *(int *)*state;
    o.buffer_size_mb = 1;
    o.max_endpoints = 3;
    cairn_log_t *log;
    assert_int_equal(cairn_log_open(&o, &log), 0);
    cairn_append_result_t res;
    assert_int_equal(append1(log, "a", "t", NULL, CAIRN_EXPECT_ANY, &res), 0);
    assert_int_equal(append1(log, "b", "t", NULL, CAIRN_EXPECT_ANY, &res), 0);
    assert_int_equal(append1(log, "c", "t", NULL, CAIRN_EXPECT_ANY, &res), 0);
    assert_int_equal(append1(log, "d", "t", NULL, CAIRN_EXPECT_ANY, &res),
                     CAIRN_ETABLE_FULL);
    /* Existing streams keep working. */
    assert_int_equal(append1(log, "b", "t", NULL, CAIRN_EXPECT_ANY, &res), 0);
    assert_int_equal(res.version, 2);
    assert_int_equal(cairn_log_next_seq(log), 5);
    cairn_log_close(log);
}

static void bad_options_refused(void **state)
{
    (void)state;
    cairn_log_opts_t o;
    cairn_log_t *log;
    cairn_log_opts_init(&o);
    o.buffer_size_mb = CAIRN_BUFFER_SIZE_MB_CAP + 1;
    assert_int_equal(cairn_log_open(&o, &log), CAIRN_EBAD_OPTION);
    cairn_log_opts_init(&o);
    o.max_event_bytes = CAIRN_MAX_EVENT_BYTES_CAP + 1;
    assert_int_equal(cairn_log_open(&o, &log), CAIRN_EBAD_OPTION);
    cairn_log_opts_init(&o);
    o.max_endpoints = 0;
    assert_int_equal(cairn_log_open(&o, &log), CAIRN_EBAD_OPTION);
    cairn_log_opts_init(&o);
    o.first_seq = 0;
    assert_int_equal(cairn_log_open(&o, &log), CAIRN_EBAD_OPTION);
}

static void too_many_readers(void **state)
{
    cairn_log_t *log = open_log(state, 1, 100);
    cairn_log_iter_t *its[CAIRN_RING_READERS_MAX + 1];
    for (int i = 0; i < CAIRN_RING_READERS_MAX; i++)
        assert_int_equal(cairn_log_iter_open(log, NULL, &its[i]), 0);
    assert_int_equal(cairn_log_iter_open(log, NULL, &its[CAIRN_RING_READERS_MAX]),
                     CAIRN_ETOO_MANY_READERS);
    for (int i = 0; i < CAIRN_RING_READERS_MAX; i++)
        cairn_log_iter_close(its[i]);
    cairn_log_close(log);
}

static void error_table_is_complete(void **state)
{
    (void)state;
    static const int codes[] = {
#define CODE(name, value, msg) value,
        CAIRN_ERRNO_MAP(CODE)
#undef CODE
    };
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        assert_true(codes[i] <= -1000 && codes[i] > -2000);
        assert_string_not_equal(cairn_strerror(codes[i]), "unknown error");
        assert_memory_equal(cairn_err_name(codes[i]), "CAIRN_E", 7);
        for (size_t j = i + 1; j < n; j++)
            assert_int_not_equal(codes[i], codes[j]);
    }
    assert_string_equal(cairn_err_name(CAIRN_EVERSION_CONFLICT),
                        "CAIRN_EVERSION_CONFLICT");
    assert_string_equal(cairn_err_name(-2), "ENOENT");
    assert_string_equal(cairn_strerror(0), "success");
    assert_string_equal(cairn_strerror(-99999), "unknown error");
    assert_string_equal(cairn_version(), CAIRN_VERSION_STRING);
}

/* With opts.guard, every event passes the payload guards inside append:
 * a rejected batch stores nothing, returns the guard's code and is
 * audited. */
static void guards_inside_append(void **state)
{
    cairn_guard_opts_t go;
    cairn_guard_opts_init(&go);
    cairn_guard_t *g;
    char err[256];
    assert_int_equal(cairn_guard_open(&go, &g, err, sizeof err), 0);
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.enhanced_mode = *(int *)*state;
    o.buffer_size_mb = 1;
    o.guard = g;
    cairn_log_t *log;
    assert_int_equal(cairn_log_open(&o, &log), 0);
    cairn_append_result_t res;
    cairn_event_in_t evs[2] = {ev_of("ok", "{\"a\":1}"),
                               ev_of("open", "{\"p\":\"../../etc/passwd\"}")};
    evs[0].flags = evs[1].flags = CAIRN_EVENT_JSON;
    assert_int_equal(cairn_log_append(log, "files", 5, evs, 2,
                                      CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     CAIRN_EGUARD_PATTERN);
    evs[1] = ev_of("bad", "{\"unterminated\"");
    evs[1].flags = CAIRN_EVENT_JSON;
    assert_int_equal(cairn_log_append(log, "files", 5, evs, 2,
                                      CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     CAIRN_EGUARD_JSON_SYNTAX);
    /* Binary payloads are scanned too, but not parsed as JSON. */
    evs[1] = ev_of("blob", "{not json but fine as bytes");
    assert_int_equal(cairn_log_append(log, "files", 5, evs, 2,
                                      CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     0);
    assert_int_equal(res.version, 2);
    /* Nothing of the refused batches reached the stream; both refusals
     * are in the audit trail. */
    cairn_stream_info_t si;
    assert_int_equal(cairn_log_stream_info(log, "files", 5, &si), 0);
    assert_int_equal(si.version, 2);
    cairn_read_filter_t f = {0};
    f.stream = "$audit";
    f.stream_len = 6;
    uint64_t seqs[8];
    assert_int_equal(read_seqs(log, &f, seqs, 8), 2);
    cairn_log_close(log);
    cairn_guard_close(g);
}

#define TWIN(fn)                                                               \
    {#fn "_lockfree", fn, NULL, NULL, &ENHANCED},                              \
        {#fn "_mutex", fn, NULL, NULL, &MUTEX}

static const struct CMUnitTest tests[] = {
    TWIN(append_and_read_back),
    TWIN(time_defaults_to_now),
    TWIN(batch_is_consecutive),
    TWIN(expected_version_rules),
    TWIN(version_overflow_refused),
    TWIN(invalid_fields_rejected),
    TWIN(batch_larger_than_quarter_ring_refused),
    TWIN(idempotent_append),
    TWIN(read_filters),
    TWIN(release_then_expired),
    TWIN(full_ring_fails_then_recovers),
    TWIN(wraps_many_laps),
    TWIN(seq_crosses_32_bits),
    TWIN(table_full_refuses_new_streams),
    TWIN(too_many_readers),
    TWIN(guards_inside_append),
    {"bad_options_refused", bad_options_refused, NULL, NULL, NULL},
    {"error_table_is_complete", error_table_is_complete, NULL, NULL, NULL},
};

CAIRN_TEST_MAIN(tests)
