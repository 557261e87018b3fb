/*
 * test_projection.c — projections: cached reads, derive by replay,
 * commit-time folds, CLOCK eviction, snapshots (+ tail replay = full
 * replay, corrupt tails), time travel, the built-ins, and the cache under
 * concurrent appends.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

#include "cairn/bus.h"
#include "cairn/log.h"
#include "cairn/projection.h"

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

typedef struct env {
    char dir[64];
    cairn_log_t *log;
    cairn_bus_t *bus;
} env_t;

static void env_open(env_t *e, int durable)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.buffer_size_mb = 4;
    e->dir[0] = 0;
    if (durable) {
        snprintf(e->dir, sizeof e->dir, "/tmp/cairn-proj-XXXXXX");
        assert_non_null(mkdtemp(e->dir));
        o.data_dir = e->dir;
        o.segment_bytes = CAIRN_SEGMENT_BYTES_MIN;
    }
    assert_int_equal(cairn_log_open(&o, &e->log), 0);
    assert_int_equal(cairn_bus_create(e->log, NULL, &e->bus), 0);
}

static void env_close(env_t *e, int remove_dir)
{
    cairn_bus_close(e->bus);
    cairn_log_close(e->log);
    if (remove_dir && e->dir[0])
        rm_rf(e->dir);
}

static uint64_t append_json(cairn_log_t *log, const char *stream,
                            const char *type, const char *json, int64_t t)
{
    cairn_event_in_t ev = {.type = type, .type_len = strlen(type),
                           .payload = json, .payload_len = strlen(json),
                           .flags = CAIRN_EVENT_JSON, .time_ns = t};
    cairn_append_result_t res;
    int rc = cairn_log_append(log, stream, strlen(stream), &ev, 1,
                              CAIRN_EXPECT_ANY, CAIRN_DURABILITY_MEMORY, &res);
    THREAD_CHECK(rc == 0);
    return res.first_seq;
}

/* A fixed-size test fold whose result checks itself: every event carries
 * its stream version as an 8-byte payload; the state is (count, sum of
 * versions, sum of squares, last version).  A state folded from exactly
 * the events 1..v has count v and sums v(v+1)/2 and v(v+1)(2v+1)/6. */
typedef struct sums {
    uint64_t count, sum, sumsq, last;
} sums_t;

static int sums_fold(void *ctx, void *state, size_t *len, size_t cap,
                     const cairn_event_t *ev)
{
    (void)ctx;
    sums_t s = {0};
    if (*len == sizeof s)
        memcpy(&s, state, sizeof s);
    if (cap < sizeof s || ev->payload_len != 8)
        return CAIRN_EBAD_OPTION;
    uint64_t v;
    memcpy(&v, ev->payload, 8);
    s.count++;
    s.sum += v;
    s.sumsq += v * v;
    s.last = v;
    memcpy(state, &s, sizeof s);
    *len = sizeof s;
    return 0;
}

static int sums_ok(const sums_t *s, uint64_t v)
{
    return s->count == v && s->sum == v * (v + 1) / 2 &&
           s->sumsq == v * (v + 1) * (2 * v + 1) / 6 && s->last == v;
}

static cairn_projection_t *sums_projection(cairn_bus_t *bus, const char *name,
                                           const cairn_projection_opts_t *o)
{
    cairn_projection_def_t d = {.name = name, .state_max = sizeof(sums_t),
                                .fold = sums_fold};
    cairn_projection_t *p;
    assert_int_equal(cairn_projection_create(bus, &d, o, &p), 0);
    return p;
}

static uint64_t append_sums(cairn_log_t *log, const char *stream, int64_t t)
{
    cairn_stream_info_t si;
    uint64_t v = cairn_log_stream_info(log, stream, strlen(stream), &si) == 0
                     ? si.version + 1
                     : 1;
    cairn_event_in_t ev = {.type = "n", .type_len = 1, .payload = &v,
                           .payload_len = 8, .time_ns = t};
    cairn_append_result_t res;
    int rc = cairn_log_append(log, stream, strlen(stream), &ev, 1,
                              (int64_t)v - 1, CAIRN_DURABILITY_MEMORY, &res);
    THREAD_CHECK(rc == 0);
    return res.first_seq;
}

/* ---- cache ----------------------------------------------------------------- */

static void miss_then_hit_and_commit_updates(void **state)
{
    env_t e;
    env_open(&e, 0);
    cairn_projection_t *p = sums_projection(e.bus, "sums", NULL);
    sums_t s;
    cairn_projection_info_t info;
    assert_int_equal(cairn_projection_get(p, "x", 1, 0, &s, sizeof s, &info),
                     CAIRN_ENOT_FOUND);
    for (int i = 0; i < 10; i++)
        append_sums(e.log, "x", 0);
    assert_int_equal(cairn_projection_read_cached(p, "x", 1, &s, sizeof s, &info),
                     CAIRN_ENOT_FOUND);
    assert_int_equal(cairn_projection_get(p, "x", 1, 0, &s, sizeof s, &info), 0);
    assert_int_equal(info.cached, 0);
    assert_int_equal(info.replayed, 10);
    assert_true(sums_ok(&s, 10));
    assert_int_equal(cairn_projection_get(p, "x", 1, 0, &s, sizeof s, &info), 0);
    assert_int_equal(info.cached, 1);
    /* New events are folded into the cached entry on commit. */
    uint64_t seq = 0;
    for (int i = 0; i < 5; i++)
        seq = append_sums(e.log, "x", 0);
    assert_int_equal(cairn_projection_read_cached(p, "x", 1, &s, sizeof s, &info),
                     0);
    assert_true(sums_ok(&s, 15));
    assert_int_equal(info.seq, seq);
    assert_int_equal(info.version, 15);
    cairn_projection_stats_t st;
    cairn_projection_stats(p, &st);
    assert_int_equal(st.misses, 2); /* the ENOT_FOUND one counts */
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.folded, 5);
    assert_int_equal(st.derives, 1);
    assert_int_equal(st.cached, 1);
    /* A buffer too small is refused, with the size needed. */
    char tiny[4];
    assert_int_equal(cairn_projection_read_cached(p, "x", 1, tiny, sizeof tiny,
                                                  &info),
                     -ENOBUFS);
    assert_int_equal(info.state_len, sizeof s);
    env_close(&e, 1);
}

static void invalidate_on_commit_drops_entry(void **state)
{
    env_t e;
    env_open(&e, 0);
    cairn_projection_def_t d = {.name = "inv", .state_max = sizeof(sums_t),
                                .fold = sums_fold, .invalidate_on_commit = 1};
    cairn_projection_t *p;
    assert_int_equal(cairn_projection_create(e.bus, &d, NULL, &p), 0);
    append_sums(e.log, "x", 0);
    sums_t s;
    assert_int_equal(cairn_projection_get(p, "x", 1, 0, &s, sizeof s, NULL), 0);
    append_sums(e.log, "x", 0);
    assert_int_equal(cairn_projection_read_cached(p, "x", 1, &s, sizeof s, NULL),
                     CAIRN_ENOT_FOUND);
    assert_int_equal(cairn_projection_get(p, "x", 1, 0, &s, sizeof s, NULL), 0);
    assert_true(sums_ok(&s, 2));
    cairn_projection_stats_t st;
    cairn_projection_stats(p, &st);
    assert_int_equal(st.invalidated, 1);
    env_close(&e, 1);
}

static void clock_evicts_at_capacity(void **state)
{
    env_t e;
    env_open(&e, 0);
    cairn_projection_opts_t o;
    cairn_projection_opts_init(&o);
    o.cache_capacity = 8;
    cairn_projection_t *p = sums_projection(e.bus, "small", &o);
    char name[16];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "s%d", i);
        append_sums(e.log, name, 0);
        append_sums(e.log, name, 0);
    }
    sums_t s;
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "s%d", i);
        assert_int_equal(cairn_projection_get(p, name, strlen(name), 0, &s,
                                              sizeof s, NULL),
                         0);
        assert_true(sums_ok(&s, 2));
    }
    cairn_projection_stats_t st;
    cairn_projection_stats(p, &st);
    assert_int_equal(st.cached, 8);
    assert_int_equal(st.evictions, 12);
    /* Every stream still reads right, cached or not. */
    int hits = 0;
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "s%d", i);
        hits += cairn_projection_read_cached(p, name, strlen(name), &s, sizeof s,
                                             NULL) == 0;
        assert_int_equal(cairn_projection_get(p, name, strlen(name), 0, &s,
                                              sizeof s, NULL),
                         0);
        assert_true(sums_ok(&s, 2));
    }
    assert_true(hits <= 8);
    env_close(&e, 1);
}

static void min_seq_reads_your_writes(void **state)
{
    env_t e;
    env_open(&e, 0);
    cairn_projection_t *p = sums_projection(e.bus, "ryw", NULL);
    append_sums(e.log, "x", 0);
    sums_t s;
    cairn_projection_info_t info;
    assert_int_equal(cairn_projection_get(p, "x", 1, 0, &s, sizeof s, &info), 0);
    uint64_t seq = append_sums(e.log, "x", 0);
    assert_int_equal(cairn_projection_get(p, "x", 1, seq, &s, sizeof s, &info),
                     0);
    assert_true(info.seq >= seq);
    assert_true(sums_ok(&s, 2));
    env_close(&e, 1);
}

static void find_by_name(void **state)
{
    env_t e;
    env_open(&e, 0);
    cairn_projection_t *p = sums_projection(e.bus, "named", NULL), *q;
    assert_int_equal(cairn_projection_find(e.bus, "named", &q), 0);
    assert_ptr_equal(p, q);
    assert_string_equal(cairn_projection_name(q), "named");
    assert_int_equal(cairn_projection_find(e.bus, "nope", &q),
                     CAIRN_EPROJECTION_UNKNOWN);
    cairn_projection_def_t d = {.name = "named", .fold = sums_fold};
    assert_int_equal(cairn_projection_create(e.bus, &d, NULL, &q),
                     CAIRN_EPROJECTION_EXISTS);
    d.name = "bad/name";
    assert_int_equal(cairn_projection_create(e.bus, &d, NULL, &q),
                     CAIRN_EBAD_OPTION);
    cairn_projection_destroy(p);
    assert_int_equal(cairn_projection_find(e.bus, "named", &q),
                     CAIRN_EPROJECTION_UNKNOWN);
    env_close(&e, 1);
}

/* ---- snapshots and time travel -------------------------------------------- */

static void snapshot_plus_tail_equals_full_replay(void **state)
{
    env_t e;
    env_open(&e, 1);
    cairn_projection_opts_t o;
    cairn_projection_opts_init(&o);
    o.snapshot_every = 10;
    cairn_projection_t *p = sums_projection(e.bus, "snap", &o);
    for (int i = 0; i < 95; i++) {
        append_sums(e.log, "x", 0);
        append_sums(e.log, "y", 0); /* interleaved: replay must skip it */
    }
    sums_t s, full;
    cairn_projection_info_t info;
    assert_int_equal(cairn_projection_get(p, "x", 1, 0, &s, sizeof s, &info), 0);
    assert_int_equal(info.from_snapshot, 0);
    cairn_projection_stats_t st;
    cairn_projection_stats(p, &st);
    assert_int_equal(st.snapshots_written, 9);
    for (int i = 0; i < 7; i++)
        append_sums(e.log, "x", 0);
    /* A new instance loads the snapshot file and replays only the tail. */
    cairn_projection_destroy(p);
    p = sums_projection(e.bus, "snap", &o);
    assert_int_equal(cairn_projection_get(p, "x", 1, 0, &s, sizeof s, &info), 0);
    assert_int_equal(info.from_snapshot, 1);
    assert_int_equal(info.replayed, 12); /* from version 90 to 102 */
    assert_int_equal(info.version, 102);
    /* The same as a replay with no snapshot at all. */
    cairn_projection_opts_t none = o;
    none.snapshot_every = 0;
    cairn_projection_t *q = sums_projection(e.bus, "nosnap", &none);
    cairn_projection_info_t qi;
    assert_int_equal(cairn_projection_get(q, "x", 1, 0, &full, sizeof full, &qi),
                     0);
    assert_int_equal(qi.replayed, 102);
    assert_memory_equal(&s, &full, sizeof s);
    assert_true(sums_ok(&s, 102));
    env_close(&e, 1);
}

static void snapshot_file_corrupt_tail_is_cut(void **state)
{
    env_t e;
    env_open(&e, 1);
    cairn_projection_opts_t o;
    cairn_projection_opts_init(&o);
    o.snapshot_every = 5;
    cairn_projection_t *p = sums_projection(e.bus, "cut", &o);
    for (int i = 0; i < 23; i++)
        append_sums(e.log, "x", 0);
    sums_t s;
    assert_int_equal(cairn_projection_get(p, "x", 1, 0, &s, sizeof s, NULL), 0);
    cairn_projection_destroy(p);
    /* Flip a byte in the last record (its state): CRC fails, cut there. */
    char path[128];
    snprintf(path, sizeof path, "%s/snapshots/cut.snap", e.dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, sb.st_size - 9), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, sb.st_size - 9), 1);
    close(fd);
    p = sums_projection(e.bus, "cut", &o);
    cairn_projection_info_t info;
    assert_int_equal(cairn_projection_get(p, "x", 1, 0, &s, sizeof s, &info), 0);
    assert_true(sums_ok(&s, 23));
    assert_int_equal(info.from_snapshot, 1);
    assert_int_equal(info.replayed, 8); /* snapshot 20 was cut: from 15 */
    struct stat sb2;
    assert_int_equal(stat(path, &sb2), 0);
    assert_true(sb2.st_size < sb.st_size + 1000);
    env_close(&e, 1);
}

static void time_travel_at_seq_and_at_time(void **state)
{
    env_t e;
    env_open(&e, 0);
    cairn_projection_opts_t o;
    cairn_projection_opts_init(&o);
    o.snapshot_every = 4;
    cairn_projection_t *p = sums_projection(e.bus, "tt", &o);
    const int64_t t0 = INT64_C(1750000000000000000);
    uint64_t seqs[30];
    for (int i = 0; i < 30; i++) {
        seqs[i] = append_sums(e.log, "x", t0 + i * 1000000);
        append_sums(e.log, "other", t0 + i * 1000000);
    }
    sums_t s;
    cairn_projection_info_t info;
    /* Cache the latest (writes snapshots at 4, 8, ...). */
    assert_int_equal(cairn_projection_get(p, "x", 1, 0, &s, sizeof s, &info), 0);
    assert_true(sums_ok(&s, 30));
    for (int v = 1; v <= 30; v++) {
        /* At the event's own seq, and at the seq just after it (another
         * stream's event): the state after version v either way. */
        assert_int_equal(cairn_projection_get_at(p, "x", 1, seqs[v - 1], 0, &s,
                                                 sizeof s, &info),
                         0);
        assert_true(sums_ok(&s, (uint64_t)v));
        assert_int_equal(info.seq, seqs[v - 1]);
        assert_int_equal(cairn_projection_get_at(p, "x", 1, seqs[v - 1] + 1, 0,
                                                 &s, sizeof s, &info),
                         0);
        assert_true(sums_ok(&s, (uint64_t)v));
        /* At a time between event v and v + 1. */
        assert_int_equal(cairn_projection_get_at(p, "x", 1, 0,
                                                 t0 + (v - 1) * 1000000 + 500000,
                                                 &s, sizeof s, &info),
                         0);
        assert_true(sums_ok(&s, (uint64_t)v));
        assert_int_equal(info.version, (uint64_t)v);
    }
    /* Before the first event: the initial state, version 0. */
    assert_int_equal(cairn_projection_get_at(p, "x", 1, 0, t0 - 1, &s, sizeof s,
                                             &info),
                     0);
    assert_int_equal(info.version, 0);
    assert_int_equal(info.state_len, 0);
    cairn_projection_stats_t st;
    cairn_projection_stats(p, &st);
    assert_true(st.snapshots_used > 0);
    assert_int_equal(cairn_projection_get_at(p, "x", 1, 0, 0, &s, sizeof s, NULL),
                     CAIRN_EBAD_OPTION);
    /* The cached latest state was not disturbed by time travel. */
    assert_int_equal(cairn_projection_read_cached(p, "x", 1, &s, sizeof s, NULL),
                     0);
    assert_true(sums_ok(&s, 30));
    env_close(&e, 1);
}

/* ---- built-ins ---------------------------------------------------------- */

static char *get_json(cairn_bus_t *bus, const char *name, const char *stream,
                      uint64_t at_seq)
{
    cairn_projection_t *p;
    assert_int_equal(cairn_projection_find(bus, name, &p), 0);
    char *json;
    size_t len;
    assert_int_equal(cairn_projection_get_json(p, stream, strlen(stream), at_seq,
                                               0, &json, &len, NULL),
                     0);
    assert_int_equal(strlen(json), len);
    return json;
}

static void builtins_counts_last_merge(void **state)
{
    env_t e;
    env_open(&e, 0);
    cairn_projection_t *p;
    assert_int_equal(cairn_projection_create_builtin(e.bus, "counts", NULL, NULL,
                                                     NULL, &p),
                     0);
    assert_int_equal(cairn_projection_create_builtin(e.bus, "last", NULL, NULL,
                                                     NULL, &p),
                     0);
    assert_int_equal(cairn_projection_create_builtin(e.bus, "merge", "doc", NULL,
                                                     NULL, &p),
                     0);
    assert_int_equal(cairn_projection_create_builtin(e.bus, "nope", NULL, NULL,
                                                     NULL, &p),
                     CAIRN_EPROJECTION_UNKNOWN);
    append_json(e.log, "auth:c1", "auth.failure", "{\"a\":\"b\",\"c\":{\"d\":\"e\",\"f\":\"g\"}}", 0);
    uint64_t s2 = append_json(e.log, "auth:c1", "auth.success",
                              "{\"a\":\"z\",\"c\":{\"f\":null}}", 0);
    append_json(e.log, "auth:c1", "auth.failure", "not json", 0);
    char *j = get_json(e.bus, "counts", "auth:c1", 0);
    assert_string_equal(j, "{\"total\":3,\"by_type\":{\"auth.failure\":2,"
                           "\"auth.success\":1},\"other\":0}");
    free(j);
    /* RFC 7396 section 3's example, then a non-JSON event skipped. */
    j = get_json(e.bus, "doc", "auth:c1", 0);
    assert_string_equal(j, "{\"doc\":{\"a\":\"z\",\"c\":{\"d\":\"e\"}},"
                           "\"skipped\":1}");
    free(j);
    j = get_json(e.bus, "doc", "auth:c1", s2 - 1);
    assert_string_equal(j, "{\"doc\":{\"a\":\"b\",\"c\":{\"d\":\"e\",\"f\":\"g\"}},"
                           "\"skipped\":0}");
    free(j);
    j = get_json(e.bus, "last", "auth:c1", s2);
    assert_non_null(strstr(j, "\"type\":\"auth.success\""));
    assert_non_null(strstr(j, "\"data\":{\"a\":\"z\",\"c\":{\"f\":null}}"));
    free(j);
    j = get_json(e.bus, "last", "auth:c1", 0);
    assert_non_null(strstr(j, "\"data_base64\":\"bm90IGpzb24=\""));
    free(j);
    /* More patches through the commit path keep the cached doc right. */
    append_json(e.log, "auth:c1", "x", "{\"c\":{\"d\":null},\"n\":[1,null]}", 0);
    append_json(e.log, "auth:c1", "x", "{\"a\":null}", 0);
    j = get_json(e.bus, "doc", "auth:c1", 0);
    assert_string_equal(j, "{\"doc\":{\"c\":{},\"n\":[1,null]},\"skipped\":1}");
    free(j);
    env_close(&e, 1);
}

static void builtin_fsm_folds_through_definition(void **state)
{
    env_t e;
    env_open(&e, 0);
    const char *text = "initial = CREATED\n"
                       "transition = CREATED + POSITION_OPENED -> MONITORING\n"
                       "transition = MONITORING + EXIT_CONDITION_MET -> "
                       "EXIT_PENDING\n";
    cairn_fsm_def_t *def;
    assert_int_equal(cairn_fsm_def_parse(text, strlen(text), &def, NULL), 0);
    cairn_projection_t *p;
    assert_int_equal(cairn_projection_create_builtin(e.bus, "fsm", NULL, def,
                                                     NULL, &p),
                     0);
    uint64_t s1 = append_json(e.log, "position:1", "POSITION_OPENED", "{}", 0);
    append_json(e.log, "position:1", "PRICE", "{}", 0);
    append_json(e.log, "position:1", "EXIT_CONDITION_MET", "{}", 0);
    char *j = get_json(e.bus, "fsm", "position:1", 0);
    assert_string_equal(j, "{\"fsm_state_id\":2,\"fsm_state\":\"EXIT_PENDING\","
                           "\"invalid_triggers\":0}");
    free(j);
    j = get_json(e.bus, "fsm", "position:1", s1);
    assert_non_null(strstr(j, "\"fsm_state\":\"MONITORING\""));
    free(j);
    cairn_bus_close(e.bus);
    cairn_log_close(e.log);
    cairn_fsm_def_free(def);
}

static void builtin_fsm_without_definition_reads_table(void **state)
{
    env_t e;
    env_open(&e, 0);
    cairn_projection_t *p;
    assert_int_equal(cairn_projection_create_builtin(e.bus, "fsm", NULL, NULL,
                                                     NULL, &p),
                     0);
    append_json(e.log, "position:1", "POSITION_OPENED", "{}", 0);
    char *j = get_json(e.bus, "fsm", "position:1", 0);
    assert_string_equal(j, "{\"fsm_state_id\":0}");
    free(j);
    char buf[8];
    assert_int_equal(cairn_projection_get_at(p, "position:1", 10, 1, 0, buf,
                                             sizeof buf, NULL),
                     CAIRN_EBAD_OPTION);
    env_close(&e, 1);
}

static void merge_state_too_large_is_an_error(void **state)
{
    env_t e;
    env_open(&e, 0);
    cairn_projection_t *p;
    cairn_projection_opts_t o;
    cairn_projection_opts_init(&o);
    assert_int_equal(cairn_projection_create_builtin(e.bus, "merge", NULL, NULL,
                                                     &o, &p),
                     0);
    char big[5000];
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"k\":\"", 6);
    memcpy(big + sizeof big - 3, "\"}", 3);
    append_json(e.log, "s", "t", big, 0);
    char *json;
    size_t len;
    assert_int_equal(cairn_projection_get_json(p, "s", 1, 0, 0, &json, &len,
                                               NULL),
                     CAIRN_EPROJECTION_STATE_TOO_LARGE);
    env_close(&e, 1);
}

/* ---- concurrency ---------------------------------------------------------- */

#define CC_STREAMS 8

typedef struct cc {
    cairn_log_t *log;
    cairn_projection_t *p;
    int id;
    int n;
    _Atomic int *stop;
    uint64_t reads;
} cc_t;

static void *cc_append(void *arg)
{
    cc_t *c = arg;
    char name[16];
    for (int i = 0; i < c->n; i++) {
        /* Each writer owns half the streams, so versions are its own. */
        snprintf(name, sizeof name, "cc%d", (i % (CC_STREAMS / 2)) * 2 + c->id);
        append_sums(c->log, name, 0);
    }
    return NULL;
}

static void *cc_read(void *arg)
{
    cc_t *c = arg;
    char name[16];
    unsigned i = 0;
    while (!atomic_load(c->stop)) {
        snprintf(name, sizeof name, "cc%u", i++ % CC_STREAMS);
        /* Poisoned: a state of length 0 (no event of the stream readable
         * yet, e.g. behind a preempted producer's uncommitted record) must
         * not be mistaken for the buffer's old content. */
        sums_t s = {~0ull, ~0ull, ~0ull, ~0ull};
        cairn_projection_info_t info;
        int rc = cairn_projection_get(c->p, name, strlen(name), 0, &s, sizeof s,
                                      &info);
        if (rc == 0 && info.state_len == 0) {
            THREAD_CHECK(info.version == 0);
            memset(&s, 0, sizeof s);
        }
        if (rc == CAIRN_ENOT_FOUND)
            continue;
        THREAD_CHECK(rc == 0);
        /* Whatever it returns is exactly the fold of versions 1..v. */
        THREAD_CHECK(sums_ok(&s, info.version));
        c->reads++;
    }
    return NULL;
}

/* Cached states stay equal to a full replay while two threads append and
 * two read (derive, cache, fold on commit, evict: capacity < streams). */
static void cache_consistent_with_replay_under_concurrent_appends(void **state)
{
    for (int round = 0; round < 3; round++) {
        env_t e;
        env_open(&e, 0);
        cairn_projection_opts_t o;
        cairn_projection_opts_init(&o);
        o.cache_capacity = round == 2 ? 3 : 64;
        o.snapshot_every = 7;
        cairn_projection_t *p = sums_projection(e.bus, "cc", &o);
        _Atomic int stop = 0;
        cc_t w[2] = {{e.log, p, 0, 4000, &stop, 0}, {e.log, p, 1, 4000, &stop, 0}};
        cc_t r[2] = {{e.log, p, 0, 0, &stop, 0}, {e.log, p, 1, 0, &stop, 0}};
        pthread_t wt[2], rt[2];
        for (int i = 0; i < 2; i++) {
            assert_int_equal(pthread_create(&wt[i], NULL, cc_append, &w[i]), 0);
            assert_int_equal(pthread_create(&rt[i], NULL, cc_read, &r[i]), 0);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(wt[i], NULL);
        atomic_store(&stop, 1);
        for (int i = 0; i < 2; i++)
            pthread_join(rt[i], NULL);
        assert_true(r[0].reads + r[1].reads > 0);
        cairn_bus_flush(e.bus);
        /* Quiescent: every cached entry is the full replay. */
        for (int i = 0; i < CC_STREAMS; i++) {
            char name[16];
            snprintf(name, sizeof name, "cc%d", i);
            cairn_stream_info_t si;
            assert_int_equal(cairn_log_stream_info(e.log, name, strlen(name), &si),
                             0);
            sums_t s, full;
            cairn_projection_info_t info, fi;
            int rc = cairn_projection_read_cached(p, name, strlen(name), &s,
                                                  sizeof s, &info);
            assert_int_equal(cairn_projection_get_at(p, name, strlen(name),
                                                     si.last_seq, 0, &full,
                                                     sizeof full, &fi),
                             0);
            assert_true(sums_ok(&full, si.version));
            if (rc == 0) {
                assert_int_equal(info.version, si.version);
                assert_memory_equal(&s, &full, sizeof s);
            }
            assert_int_equal(cairn_projection_get(p, name, strlen(name), 0, &s,
                                                  sizeof s, &info),
                             0);
            assert_memory_equal(&s, &full, sizeof s);
        }
        env_close(&e, 1);
    }
}

static const struct CMUnitTest cases[] = {
    cmocka_unit_test(miss_then_hit_and_commit_updates),
    cmocka_unit_test(invalidate_on_commit_drops_entry),
    cmocka_unit_test(clock_evicts_at_capacity),
    cmocka_unit_test(min_seq_reads_your_writes),
    cmocka_unit_test(find_by_name),
    cmocka_unit_test(snapshot_plus_tail_equals_full_replay),
    cmocka_unit_test(snapshot_file_corrupt_tail_is_cut),
    cmocka_unit_test(time_travel_at_seq_and_at_time),
    cmocka_unit_test(builtins_counts_last_merge),
    cmocka_unit_test(builtin_fsm_folds_through_definition),
    cmocka_unit_test(builtin_fsm_without_definition_reads_table),
    cmocka_unit_test(merge_state_too_large_is_an_error),
    cmocka_unit_test(cache_consistent_with_replay_under_concurrent_appends),
};

CAIRN_TEST_MAIN(cases)
