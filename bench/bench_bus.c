/*
 * bench_bus.c — projection and bus benchmarks (issue 7):
 *
 *   projection.read.cached         ns per cairn_projection_read_cached of a
 *                                  32-byte state, 1024 streams cached, one
 *                                  thread cycling through them; baseline:
 *                                  projection.read.cached.rwlock
 *   projection.read.cached.rwlock  the same read (same names, same state
 *                                  size) through an open-addressed map
 *                                  behind a pthread rwlock (read lock,
 *                                  copy, unlock), same run
 *   projection.derive.100          us to derive a 100-event stream from the
 *                                  in-memory log (get_at its last seq: an
 *                                  iterator over the stream and 100 folds,
 *                                  no snapshot); baseline:
 *                                  projection.derive.100.iter, the bare
 *                                  iteration of the same events
 *   bus.deliver.1sub / .2sub       events/s each subscriber receives through
 *                                  cairn_bus_next (blocking, futex wake-ups)
 *                                  while one producer appends 64-byte
 *                                  events; baseline: bus.deliver.Nsub.condvar,
 *                                  the same producer handing each event to
 *                                  every subscriber through a bounded
 *                                  mutex + condition-variable queue (the
 *                                  plain fan-out design the bus replaces)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cairn/bus.h"
#include "cairn/log.h"
#include "cairn/projection.h"

#define READ_STREAMS 1024u
#define READ_BATCH 4096u

static void die(const char *what, int rc)
{
    fprintf(stderr, "cairn: bench bus: %s: %s\n", what, cairn_strerror(rc));
    exit(1);
}

typedef struct state32 {
    uint64_t w[4];
} state32_t;

/* Updates the state in place, field by field, as a fixed-size fold
 * would (copying the whole struct out and back costs store-forwarding
 * stalls that would dominate a fold this small). */
static int fold32(void *ctx, void *state, size_t *len, size_t cap,
                  const cairn_event_t *ev)
{
    (void)ctx;
    (void)cap;
    uint64_t *w = state;
    if (*len != sizeof(state32_t)) {
        memset(w, 0, sizeof(state32_t));
        *len = sizeof(state32_t);
    }
    w[0]++;
    w[1] += ev->payload_len;
    w[2] = ev->seq;
    w[3] ^= (uint64_t)ev->time_ns;
    return 0;
}

static cairn_log_t *mem_log(uint32_t mb)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.buffer_size_mb = mb;
    cairn_log_t *log;
    int rc = cairn_log_open(&o, &log);
    if (rc)
        die("cannot open a log", rc);
    return log;
}

static void append(cairn_log_t *log, const char *stream, size_t len)
{
    static const char payload[64] = "0123456789012345678901234567890123456789"
                                    "01234567890123456789012";
    cairn_event_in_t ev = {.type = "bench", .type_len = 5, .payload = payload,
                           .payload_len = sizeof payload};
    cairn_append_result_t res;
    int rc;
    while ((rc = cairn_log_append(log, stream, len, &ev, 1, CAIRN_EXPECT_ANY,
                                  CAIRN_DURABILITY_MEMORY, &res)) ==
           CAIRN_ELOG_FULL)
        ;
    if (rc)
        die("append failed", rc);
}

/* ---- the rwlock twin of the cached read ---------------------------------- */

typedef struct rw_slot {
    char name[32];
    size_t len;
    state32_t state;
    int used;
} rw_slot_t;

typedef struct rw_map {
    pthread_rwlock_t lock;
    rw_slot_t slots[2 * READ_STREAMS];
} rw_map_t;

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * UINT64_C(1099511628211);
    return h;
}

static void rw_put(rw_map_t *m, const char *s, size_t n, const state32_t *st)
{
    size_t i = fnv(s, n) % (2 * READ_STREAMS);
    while (m->slots[i].used)
        i = (i + 1) % (2 * READ_STREAMS);
    memcpy(m->slots[i].name, s, n);
    m->slots[i].len = n;
    m->slots[i].state = *st;
    m->slots[i].used = 1;
}

static int rw_get(rw_map_t *m, const char *s, size_t n, state32_t *out)
{
    int rc = -1;
    pthread_rwlock_rdlock(&m->lock);
    size_t i = fnv(s, n) % (2 * READ_STREAMS);
    while (m->slots[i].used) {
        if (m->slots[i].len == n && memcmp(m->slots[i].name, s, n) == 0) {
            *out = m->slots[i].state;
            rc = 0;
            break;
        }
        i = (i + 1) % (2 * READ_STREAMS);
    }
    pthread_rwlock_unlock(&m->lock);
    return rc;
}

static void bench_reads(cairn_bench_t *b, uint64_t duration_ns)
{
    cairn_bench_progress(b, "projection.read.cached");
    cairn_log_t *log = mem_log(64);
    cairn_bus_t *bus;
    int rc = cairn_bus_create(log, NULL, &bus);
    if (rc)
        die("cannot create a bus", rc);
    cairn_projection_def_t d = {.name = "bench", .state_max = sizeof(state32_t),
                                .fold = fold32};
    cairn_projection_opts_t po;
    cairn_projection_opts_init(&po);
    po.cache_capacity = 2 * READ_STREAMS;
    po.snapshot_every = 0;
    cairn_projection_t *p;
    if ((rc = cairn_projection_create(bus, &d, &po, &p)))
        die("cannot create a projection", rc);
    static char names[READ_STREAMS][32];
    static size_t lens[READ_STREAMS];
    static rw_map_t map;
    memset(&map, 0, sizeof map);
    pthread_rwlock_init(&map.lock, NULL);
    for (unsigned i = 0; i < READ_STREAMS; i++) {
        lens[i] = (size_t)snprintf(names[i], sizeof names[i],
                                   "tools/call:client-%u", i);
        append(log, names[i], lens[i]);
        state32_t s;
        if ((rc = cairn_projection_get(p, names[i], lens[i], 0, &s, sizeof s,
                                       NULL)))
            die("derive failed", rc);
        rw_put(&map, names[i], lens[i], &s);
    }
    state32_t s;
    uint64_t sum = 0, ops = 0, start = cairn_bench_now_ns(), now;
    do {
        for (unsigned i = 0; i < READ_BATCH; i++) {
            unsigned k = i % READ_STREAMS;
            if (cairn_projection_read_cached(p, names[k], lens[k], &s, sizeof s,
                                             NULL) != 0)
                die("cached read missed", CAIRN_ENOT_FOUND);
            sum += s.w[0];
        }
        ops += READ_BATCH;
        now = cairn_bench_now_ns();
    } while (now - start < duration_ns);
    double cached = (double)(now - start) / (double)ops;
    cairn_bench_progress(b, "projection.read.cached.rwlock");
    ops = 0;
    start = cairn_bench_now_ns();
    do {
        for (unsigned i = 0; i < READ_BATCH; i++) {
            unsigned k = i % READ_STREAMS;
            if (rw_get(&map, names[k], lens[k], &s) != 0)
                die("rwlock read missed", CAIRN_ENOT_FOUND);
            sum += s.w[0];
        }
        ops += READ_BATCH;
        now = cairn_bench_now_ns();
    } while (now - start < duration_ns);
    double rw = (double)(now - start) / (double)ops;
    CAIRN_BENCH_KEEP(sum);
    pthread_rwlock_destroy(&map.lock);
    cairn_bus_close(bus);
    cairn_log_close(log);
    cairn_bench_report(b, "projection.read.cached.rwlock", "ns", rw, NULL, 0);
    cairn_bench_report(b, "projection.read.cached", "ns", cached,
                       "projection.read.cached.rwlock", rw);
}

static void bench_derive(cairn_bench_t *b, uint64_t duration_ns)
{
    cairn_bench_progress(b, "projection.derive.100");
    cairn_log_t *log = mem_log(8);
    cairn_bus_t *bus;
    int rc = cairn_bus_create(log, NULL, &bus);
    if (rc)
        die("cannot create a bus", rc);
    cairn_projection_def_t d = {.name = "derive", .state_max = sizeof(state32_t),
                                .fold = fold32};
    cairn_projection_opts_t po;
    cairn_projection_opts_init(&po);
    po.snapshot_every = 0;
    cairn_projection_t *p;
    if ((rc = cairn_projection_create(bus, &d, &po, &p)))
        die("cannot create a projection", rc);
    const char *stream = "auth:client-17";
    for (int i = 0; i < 100; i++)
        append(log, stream, strlen(stream));
    uint64_t last = cairn_log_next_seq(log) - 1;
    state32_t s;
    cairn_projection_info_t info;
    uint64_t ops = 0, start = cairn_bench_now_ns(), now;
    do {
        for (int i = 0; i < 64; i++) {
            rc = cairn_projection_get_at(p, stream, strlen(stream), last, 0, &s,
                                         sizeof s, &info);
            if (rc || info.replayed != 100)
                die("derive failed", rc);
        }
        ops += 64;
        now = cairn_bench_now_ns();
    } while (now - start < duration_ns);
    double derive_us = (double)(now - start) / (double)ops / 1000.0;
    /* Baseline: the same events through a bare filtered iterator. */
    cairn_read_filter_t f = {.from_seq = 1, .stream = stream,
                             .stream_len = strlen(stream)};
    uint64_t sum = 0;
    ops = 0;
    start = cairn_bench_now_ns();
    do {
        for (int i = 0; i < 64; i++) {
            cairn_log_iter_t *it;
            if ((rc = cairn_log_iter_open(log, &f, &it)))
                die("iterator failed", rc);
            cairn_event_t ev;
            while (cairn_log_iter_next(it, &ev) == 1)
                sum += ev.seq;
            cairn_log_iter_close(it);
        }
        ops += 64;
        now = cairn_bench_now_ns();
    } while (now - start < duration_ns);
    CAIRN_BENCH_KEEP(sum);
    double iter_us = (double)(now - start) / (double)ops / 1000.0;
    cairn_bus_close(bus);
    cairn_log_close(log);
    cairn_bench_report(b, "projection.derive.100.iter", "us", iter_us, NULL, 0);
    cairn_bench_report(b, "projection.derive.100", "us", derive_us,
                       "projection.derive.100.iter", iter_us);
}

/* ---- delivery ------------------------------------------------------------- */

typedef struct sub_arg {
    cairn_bus_t *bus;
    uint64_t n;
    uint64_t done_ns;
    _Atomic int *ready;
} sub_arg_t;

static void *bus_consumer(void *arg)
{
    sub_arg_t *a = arg;
    cairn_bus_sub_opts_t o = {.from_seq = 1};
    cairn_bus_sub_t *sub;
    int rc = cairn_bus_subscribe(a->bus, &o, &sub);
    if (rc)
        die("subscribe failed", rc);
    atomic_fetch_add(a->ready, 1);
    uint64_t got = 0;
    cairn_event_t ev;
    while (got < a->n) {
        rc = cairn_bus_next(sub, &ev, 1000000000, NULL);
        if (rc == 1)
            got++;
        else if (rc != CAIRN_ETIMEOUT)
            die("cairn_bus_next failed", rc);
    }
    a->done_ns = cairn_bench_now_ns();
    cairn_bus_unsubscribe(sub);
    return NULL;
}

static double deliver_bus(int nsub, uint64_t n)
{
    cairn_log_t *log = mem_log(512);
    cairn_bus_t *bus;
    int rc = cairn_bus_create(log, NULL, &bus);
    if (rc)
        die("cannot create a bus", rc);
    _Atomic int ready = 0;
    sub_arg_t a[2];
    pthread_t t[2];
    for (int i = 0; i < nsub; i++) {
        a[i] = (sub_arg_t){bus, n, 0, &ready};
        pthread_create(&t[i], NULL, bus_consumer, &a[i]);
    }
    while (atomic_load(&ready) < nsub)
        ;
    const char *stream = "bench:deliver";
    uint64_t start = cairn_bench_now_ns();
    for (uint64_t i = 0; i < n; i++)
        append(log, stream, 13);
    uint64_t end = start;
    for (int i = 0; i < nsub; i++) {
        pthread_join(t[i], NULL);
        if (a[i].done_ns > end)
            end = a[i].done_ns;
    }
    cairn_bus_close(bus);
    cairn_log_close(log);
    return (double)n / ((double)(end - start) / 1e9);
}

/* The baseline: a bounded queue per subscriber under a mutex, a condition
 * variable each way, the producer copying every event in. */
#define QCAP 4096u

typedef struct cq {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    uint64_t head, tail;
    struct {
        uint64_t seq;
        char payload[64];
    } slot[QCAP];
} cq_t;

typedef struct cq_arg {
    cq_t *q;
    uint64_t n;
    uint64_t done_ns;
} cq_arg_t;

static void *cq_consumer(void *arg)
{
    cq_arg_t *a = arg;
    cq_t *q = a->q;
    char copy[64];
    uint64_t sum = 0;
    for (uint64_t got = 0; got < a->n; got++) {
        pthread_mutex_lock(&q->mu);
        while (q->head == q->tail)
            pthread_cond_wait(&q->not_empty, &q->mu);
        memcpy(copy, q->slot[q->head % QCAP].payload, sizeof copy);
        sum += q->slot[q->head % QCAP].seq;
        if (q->tail - q->head == QCAP)
            pthread_cond_signal(&q->not_full);
        q->head++;
        pthread_mutex_unlock(&q->mu);
        CAIRN_BENCH_KEEP(copy[0]);
    }
    CAIRN_BENCH_KEEP(sum);
    a->done_ns = cairn_bench_now_ns();
    return NULL;
}

static double deliver_condvar(int nsub, uint64_t n)
{
    cairn_log_t *log = mem_log(512);
    static cq_t qs[2];
    cq_arg_t a[2];
    pthread_t t[2];
    for (int i = 0; i < nsub; i++) {
        cq_t *q = &qs[i];
        pthread_mutex_init(&q->mu, NULL);
        pthread_cond_init(&q->not_empty, NULL);
        pthread_cond_init(&q->not_full, NULL);
        q->head = q->tail = 0;
        a[i] = (cq_arg_t){q, n, 0};
        pthread_create(&t[i], NULL, cq_consumer, &a[i]);
    }
    static const char payload[64] = "0123456789";
    const char *stream = "bench:deliver";
    uint64_t start = cairn_bench_now_ns();
    for (uint64_t s = 1; s <= n; s++) {
        append(log, stream, 13);
        for (int i = 0; i < nsub; i++) {
            cq_t *q = &qs[i];
            pthread_mutex_lock(&q->mu);
            while (q->tail - q->head == QCAP)
                pthread_cond_wait(&q->not_full, &q->mu);
            q->slot[q->tail % QCAP].seq = s;
            memcpy(q->slot[q->tail % QCAP].payload, payload, 64);
            if (q->tail == q->head)
                pthread_cond_signal(&q->not_empty);
            q->tail++;
            pthread_mutex_unlock(&q->mu);
        }
    }
    uint64_t end = start;
    for (int i = 0; i < nsub; i++) {
        pthread_join(t[i], NULL);
        if (a[i].done_ns > end)
            end = a[i].done_ns;
        pthread_mutex_destroy(&qs[i].mu);
        pthread_cond_destroy(&qs[i].not_empty);
        pthread_cond_destroy(&qs[i].not_full);
    }
    cairn_log_close(log);
    return (double)n / ((double)(end - start) / 1e9);
}

void cairn_bench_suite_bus(cairn_bench_t *b);

void cairn_bench_suite_bus(cairn_bench_t *b)
{
    const int quick = cairn_bench_quick(b);
    const uint64_t d = quick ? 300000000u : 2000000000u;
    bench_reads(b, d);
    bench_derive(b, d);
    const uint64_t n = quick ? 500000u : 3000000u;
    for (int nsub = 1; nsub <= 2; nsub++) {
        char name[32], base[40];
        snprintf(name, sizeof name, "bus.deliver.%dsub", nsub);
        snprintf(base, sizeof base, "%s.condvar", name);
        cairn_bench_progress(b, base);
        double cv = deliver_condvar(nsub, n);
        cairn_bench_progress(b, name);
        double bus = deliver_bus(nsub, n);
        cairn_bench_report(b, base, "events/s", cv, NULL, 0);
        cairn_bench_report(b, name, "events/s", bus, base, cv);
    }
}
