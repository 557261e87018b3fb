/*
 * stress_log.c — the log's stress validator (runs under TSan in make test).
 *
 * P producers append M events each, in batches of 1..4, to K shared
 * streams, half of them with an exact expected version (retrying on
 * conflict).  A follower reads the log while it is written, releasing what
 * it has read so the small ring wraps many times and producers block on a
 * full ring.  Invariants checked, for both implementations:
 *   - every event appended is read exactly once;
 *   - seqs are contiguous from 1 and read in order;
 *   - each stream's versions are contiguous from 1 and rise with seq;
 *   - every payload is intact (each carries its own checksum);
 *   - the stream table's final versions equal the per-stream counts.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "test.h"

#include "cairn/log.h"

#define PRODUCERS 4
#define STREAMS 8
#ifdef CAIRN_SANITIZED
#define EVENTS_PER_PRODUCER 20000
#else
#define EVENTS_PER_PRODUCER 200000
#endif

/* cmocka's assertions longjmp into the main thread: worker threads check
 * with this instead and abort the process on failure. */
#define THREAD_CHECK(c)                                                        \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #c);                                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

typedef struct payload {
    uint32_t producer;
    uint32_t index;
    uint32_t fill_len;
    uint32_t checksum;
    unsigned char fill[200];
} payload_t;

static uint32_t fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

typedef struct shared {
    cairn_log_t *log;
    _Atomic int producers_done;
    _Atomic uint64_t conflicts;
    _Atomic uint64_t full_retries;
} shared_t;

typedef struct producer_arg {
    shared_t *sh;
    uint32_t id;
} producer_arg_t;

static void *producer(void *argp)
{
    producer_arg_t *a = argp;
    cairn_log_t *log = a->sh->log;
    uint64_t rng = 0x9e3779b97f4a7c15u * (a->id + 1);
    payload_t pl[4];
    cairn_event_in_t evs[4];
    uint32_t index = 0;
    while (index < EVENTS_PER_PRODUCER) {
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        uint32_t batch = (uint32_t)(rng >> 60) % 4 + 1;
        if (index + batch > EVENTS_PER_PRODUCER)
            batch = EVENTS_PER_PRODUCER - index;
        char stream[16];
        int sl = snprintf(stream, sizeof stream, "st-%u",
                          (unsigned)((rng >> 40) % STREAMS));
        for (uint32_t i = 0; i < batch; i++) {
            payload_t *p = &pl[i];
            p->producer = a->id;
            p->index = index + i;
            p->fill_len = (uint32_t)((rng >> (8 + i)) % sizeof p->fill);
            for (uint32_t k = 0; k < p->fill_len; k++)
                p->fill[k] = (unsigned char)(p->index * 31 + k);
            p->checksum = fnv1a(p->fill, p->fill_len) ^ p->index;
            memset(&evs[i], 0, sizeof evs[i]);
            evs[i].type = "stress";
            evs[i].type_len = 6;
            evs[i].payload = p;
            evs[i].payload_len = offsetof(payload_t, fill) + p->fill_len;
        }
        int optimistic = (rng >> 20) & 1;
        for (;;) {
            int64_t expected = CAIRN_EXPECT_ANY;
            if (optimistic) {
                cairn_stream_info_t si;
                int rc = cairn_log_stream_info(log, stream, (size_t)sl, &si);
                expected = rc == 0 ? (int64_t)si.version : 0;
            }
            cairn_append_result_t res;
            int rc = cairn_log_append(log, stream, (size_t)sl, evs, batch,
                                      expected, CAIRN_DURABILITY_MEMORY, &res);
            if (rc == 0) {
                THREAD_CHECK(res.last_seq - res.first_seq + 1 == batch);
                break;
            }
            if (rc == CAIRN_EVERSION_CONFLICT) {
                atomic_fetch_add(&a->sh->conflicts, 1);
                continue;
            }
            if (rc == CAIRN_ELOG_FULL) {
                atomic_fetch_add(&a->sh->full_retries, 1);
                continue;
            }
            fprintf(stderr, "append failed: %s\n", cairn_strerror(rc));
            THREAD_CHECK(rc == 0);
        }
        index += batch;
    }
    return NULL;
}

typedef struct follower_state {
    uint64_t next_seq;
    uint64_t stream_version[STREAMS];
    unsigned char *seen; /* PRODUCERS * EVENTS_PER_PRODUCER flags */
    uint64_t count;
} follower_state_t;

static void check_event(follower_state_t *fs, const cairn_event_t *ev)
{
    assert_int_equal(ev->seq, fs->next_seq);
    fs->next_seq++;
    assert_true(ev->stream_len > 3 && ev->stream_len < 8);
    unsigned sid = (unsigned)atoi(ev->stream + 3);
    assert_true(sid < STREAMS);
    assert_int_equal(ev->version, fs->stream_version[sid] + 1);
    fs->stream_version[sid]++;
    payload_t p;
    assert_true(ev->payload_len >= offsetof(payload_t, fill));
    memcpy(&p, ev->payload, ev->payload_len);
    assert_int_equal(ev->payload_len, offsetof(payload_t, fill) + p.fill_len);
    assert_int_equal(p.checksum, fnv1a(p.fill, p.fill_len) ^ p.index);
    assert_true(p.producer < PRODUCERS && p.index < EVENTS_PER_PRODUCER);
    size_t slot = (size_t)p.producer * EVENTS_PER_PRODUCER + p.index;
    assert_int_equal(fs->seen[slot], 0);
    fs->seen[slot] = 1;
    fs->count++;
}

static void run_stress(int enhanced)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.enhanced_mode = enhanced;
    o.buffer_size_mb = 1; /* small: force many laps and full-ring waits */
    o.append_timeout_ms = 5000;
    shared_t sh;
    memset(&sh, 0, sizeof sh);
    assert_int_equal(cairn_log_open(&o, &sh.log), 0);

    follower_state_t fs;
    memset(&fs, 0, sizeof fs);
    fs.next_seq = 1;
    fs.seen = calloc(PRODUCERS * EVENTS_PER_PRODUCER, 1);
    cairn_log_iter_t *it;
    assert_int_equal(cairn_log_iter_open(sh.log, NULL, &it), 0);

    pthread_t th[PRODUCERS];
    producer_arg_t args[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        args[i].sh = &sh;
        args[i].id = i;
        pthread_create(&th[i], NULL, producer, &args[i]);
    }
    const uint64_t total = (uint64_t)PRODUCERS * EVENTS_PER_PRODUCER;
    cairn_event_t ev;
    uint64_t idle = 0;
    while (fs.count < total) {
        int rc = cairn_log_iter_next(it, &ev);
        assert_true(rc >= 0);
        if (rc == 1) {
            check_event(&fs, &ev);
            idle = 0;
            if (fs.count % 256 == 0)
                cairn_log_release(sh.log, ev.seq - 1);
        } else {
            cairn_log_release(sh.log, fs.next_seq - 1);
            assert_true(++idle < 200000000u); /* no progress: a lost event */
            sched_yield();
        }
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(cairn_log_iter_next(it, &ev), 0);
    cairn_log_iter_close(it);
    assert_int_equal(fs.count, total);
    assert_int_equal(cairn_log_next_seq(sh.log), total + 1);
    uint64_t sum = 0;
    for (unsigned s = 0; s < STREAMS; s++) {
        char stream[16];
        int sl = snprintf(stream, sizeof stream, "st-%u", s);
        cairn_stream_info_t si;
        if (fs.stream_version[s] == 0)
            continue;
        assert_int_equal(cairn_log_stream_info(sh.log, stream, (size_t)sl, &si),
                         0);
        assert_int_equal(si.version, fs.stream_version[s]);
        sum += si.version;
    }
    assert_int_equal(sum, total);
    print_message("events %lu, conflicts retried %lu, full-ring retries %lu\n",
                  (unsigned long)total, (unsigned long)atomic_load(&sh.conflicts),
                  (unsigned long)atomic_load(&sh.full_retries));
    free(fs.seen);
    cairn_log_close(sh.log);
}

static void stress_lockfree(void **state)
{
    (void)state;
    run_stress(1);
}

static void stress_mutex(void **state)
{
    (void)state;
    run_stress(0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(stress_lockfree),
    cmocka_unit_test(stress_mutex),
};

CAIRN_TEST_MAIN(tests)
