/*
 * bench_log.c — in-memory log benchmarks (issue "foundation"):
 *
 *   log.append.ring.1p / .2p   raw ring: claim + 64 B record copy + commit,
 *                              events/s; baseline: the same record writes
 *                              behind a pthread mutex (log.append.ring.1p.mutex)
 *   log.append.full.1t / .2t   cairn_log_append of one 64 B event: stream
 *                              lookup + version CAS + ring; 2t on distinct
 *                              streams; baseline: the mutex twin
 *   log.append.full.2t.mutex   the twin, 2 threads, distinct streams
 *   log.append.full.1t.metrics full.1t with the log's metrics on, as
 *                              cairn serve runs it (baseline: full.1t)
 *
 * Producers release what they appended every RELEASE_EVERY events so the
 * ring never fills; both implementations pay the same for it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cairn/cairn.h"
#include "cairn/log.h"
#include "cairn/metrics.h"
#include "log/record.h"
#include "log/ring.h"

#define RELEASE_EVERY 4096u
#define MAX_THREADS 4

static const char PAYLOAD[64] = "0123456789abcdef0123456789abcdef"
                                "0123456789abcdef012345678901234";

typedef struct bench_ctx {
    cairn_log_t *log;              /* full-append benches */
    cairn__ring_t *ring;           /* raw ring benches */
    pthread_mutex_t *ring_mu;      /* non-NULL: raw ring behind a mutex */
    uint64_t *mu_head, *mu_seq;    /* the mutex ring's counters */
    uint64_t duration_ns;
    _Atomic int ready;
    _Atomic int go;
    int nthreads;
} bench_ctx_t;

typedef struct bench_thread {
    bench_ctx_t *ctx;
    int id;
    uint64_t ops;
    uint64_t elapsed_ns;
    pthread_t th;
} bench_thread_t;

static void wait_start(bench_ctx_t *c)
{
    atomic_fetch_add(&c->ready, 1);
    while (!atomic_load(&c->go))
        ;
}

static cairn_event_in_t bench_event(void)
{
    cairn_event_in_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = "bench.event";
    ev.type_len = 11;
    ev.payload = PAYLOAD;
    ev.payload_len = sizeof PAYLOAD;
    ev.time_ns = 1;
    return ev;
}

static void *full_thread(void *arg)
{
    bench_thread_t *t = arg;
    bench_ctx_t *c = t->ctx;
    char stream[32];
    int sl = snprintf(stream, sizeof stream, "bench-%d", t->id);
    cairn_event_in_t ev = bench_event();
    cairn_append_result_t res;
    wait_start(c);
    uint64_t start = cairn_bench_now_ns(), now, ops = 0;
    do {
        for (unsigned i = 0; i < RELEASE_EVERY; i++) {
            int rc;
            while ((rc = cairn_log_append(c->log, stream, (size_t)sl, &ev, 1,
                                          CAIRN_EXPECT_ANY,
                                          CAIRN_DURABILITY_MEMORY, &res)) ==
                   CAIRN_ELOG_FULL)
                cairn_log_release(c->log, cairn_log_next_seq(c->log) - 1);
            if (rc != 0) {
                fprintf(stderr, "cairn: bench: append failed: %s\n",
                        cairn_strerror(rc));
                exit(1);
            }
        }
        ops += RELEASE_EVERY;
        cairn_log_release(c->log, res.last_seq);
        now = cairn_bench_now_ns();
    } while (now - start < c->duration_ns);
    t->ops = ops;
    t->elapsed_ns = now - start;
    return NULL;
}

static void *ring_thread(void *arg)
{
    bench_thread_t *t = arg;
    bench_ctx_t *c = t->ctx;
    cairn__ring_t *r = c->ring;
    cairn_event_in_t ev = bench_event();
    const char *stream = t->id ? "ring-b" : "ring-a";
    const uint64_t size = cairn__rec_size(6, &ev);
    uint64_t last = 0;
    wait_start(c);
    uint64_t start = cairn_bench_now_ns(), now, ops = 0;
    do {
        /* A claim waits at most ~1 ms for space (clock read once per
         * batch, not per claim). */
        uint64_t deadline = cairn_bench_now_ns() + 1000000u;
        for (unsigned i = 0; i < RELEASE_EVERY; i++) {
            cairn__claim_t cl;
            if (c->ring_mu) {
                pthread_mutex_lock(c->ring_mu);
                cl.pos = *c->mu_head;
                cl.seq = *c->mu_seq;
                *c->mu_head += size;
                *c->mu_seq += 1;
                cl.ptr = cairn__ring_at(r, cl.pos);
                cairn__rec_write(cl.ptr, size, stream, 6, &ev, cl.seq, 1, 1, 0, 0);
                atomic_store_explicit(&((cairn__rec_hdr_t *)cl.ptr)->tag,
                                      cairn__ring_tag(r, cl.pos),
                                      memory_order_release);
                pthread_mutex_unlock(c->ring_mu);
            } else {
                /* The producers are also the consumers here: one that
                 * finds the ring full releases what it has seen
                 * committed, so two producers cannot wait on each other. */
                int rc;
                while ((rc = cairn__ring_claim(r, size, 1, deadline, &cl)) ==
                       CAIRN_ELOG_FULL) {
                    cairn__ring_release(r, last);
                    deadline = cairn_bench_now_ns() + 1000000u;
                }
                if (rc != 0) {
                    fprintf(stderr, "cairn: bench: ring claim failed\n");
                    exit(1);
                }
                cairn__rec_write(cl.ptr, size, stream, 6, &ev, cl.seq, 1, 1, 0, 0);
                atomic_store_explicit(&((cairn__rec_hdr_t *)cl.ptr)->tag,
                                      cairn__ring_tag(r, cl.pos),
                                      memory_order_release);
            }
            last = cl.seq;
        }
        ops += RELEASE_EVERY;
        /* The mutex ring has no drain: it is sized so it never wraps into
         * unread data within one run (positions only grow, memory is
         * reused modulo the ring size, and nobody reads it). */
        if (!c->ring_mu)
            cairn__ring_release(r, last > 65536 ? last - 65536 : 0);
        now = cairn_bench_now_ns();
    } while (now - start < c->duration_ns);
    t->ops = ops;
    t->elapsed_ns = now - start;
    return NULL;
}

/* Run nthreads of fn; returns aggregate ops/s. */
static double run_threads(bench_ctx_t *c, void *(*fn)(void *), int nthreads)
{
    bench_thread_t th[MAX_THREADS];
    atomic_store(&c->ready, 0);
    atomic_store(&c->go, 0);
    c->nthreads = nthreads;
    for (int i = 0; i < nthreads; i++) {
        th[i].ctx = c;
        th[i].id = i;
        pthread_create(&th[i].th, NULL, fn, &th[i]);
    }
    while (atomic_load(&c->ready) < nthreads)
        ;
    atomic_store(&c->go, 1);
    double rate = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i].th, NULL);
        rate += (double)th[i].ops * 1e9 / (double)th[i].elapsed_ns;
    }
    return rate;
}

static double bench_full(int enhanced, int nthreads, uint64_t duration_ns,
                         int with_metrics)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.enhanced_mode = enhanced;
    cairn_metrics_t *m = NULL;
    if (with_metrics) {
        /* As cairn serve runs it: the seqlock provider, counters per
         * result, events and bytes on every append. */
        cairn_metrics_opts_t mo = {.enhanced_mode = 1};
        if (cairn_metrics_create(&mo, &m) != 0) {
            fprintf(stderr, "cairn: bench: cannot create metrics\n");
            exit(1);
        }
        o.metrics = m;
    }
    o.append_timeout_ms = 2; /* a full ring sends the producer to release */
    bench_ctx_t c;
    memset(&c, 0, sizeof c);
    c.duration_ns = duration_ns;
    if (cairn_log_open(&o, &c.log) != 0) {
        fprintf(stderr, "cairn: bench: cannot open log\n");
        exit(1);
    }
    double rate = run_threads(&c, full_thread, nthreads);
    cairn_log_close(c.log);
    cairn_metrics_destroy(m);
    return rate;
}

static double bench_ring(int with_mutex, int nthreads, uint64_t duration_ns)
{
    cairn__ring_t ring;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    uint64_t head = 0, seq = 1;
    if (cairn__ring_init(&ring, UINT64_C(64) << 20, 1) != 0) {
        fprintf(stderr, "cairn: bench: cannot map ring\n");
        exit(1);
    }
    bench_ctx_t c;
    memset(&c, 0, sizeof c);
    c.ring = &ring;
    c.duration_ns = duration_ns;
    if (with_mutex) {
        c.ring_mu = &mu;
        c.mu_head = &head;
        c.mu_seq = &seq;
    }
    double rate = run_threads(&c, ring_thread, nthreads);
    cairn__ring_destroy(&ring);
    return rate;
}

void cairn_bench_suite_log(cairn_bench_t *b);
void cairn_bench_suite_log(cairn_bench_t *b)
{
    const uint64_t d = cairn_bench_quick(b) ? 300000000u : 2000000000u;

    cairn_bench_progress(b, "raw ring, 1 and 2 producers");
    double ring_mu1 = bench_ring(1, 1, d);
    double ring1 = bench_ring(0, 1, d);
    double ring2 = bench_ring(0, 2, d);
    cairn_bench_report(b, "log.append.ring.1p.mutex", "events/s", ring_mu1,
                       NULL, 0);
    cairn_bench_report(b, "log.append.ring.1p", "events/s", ring1,
                       "log.append.ring.1p.mutex", ring_mu1);
    cairn_bench_report(b, "log.append.ring.2p", "events/s", ring2,
                       "log.append.ring.1p", ring1);

    cairn_bench_progress(b, "full append, lock-free and mutex twin");
    double full_mu1 = bench_full(0, 1, d, 0);
    double full1 = bench_full(1, 1, d, 0);
    double full_mu2 = bench_full(0, 2, d, 0);
    double full2 = bench_full(1, 2, d, 0);
    cairn_bench_report(b, "log.append.full.1t.mutex", "events/s", full_mu1,
                       NULL, 0);
    cairn_bench_report(b, "log.append.full.1t", "events/s", full1,
                       "log.append.full.1t.mutex", full_mu1);
    double full1m = bench_full(1, 1, d, 1);
    cairn_bench_report(b, "log.append.full.1t.metrics", "events/s", full1m,
                       "log.append.full.1t", full1);
    cairn_bench_report(b, "log.append.full.2t.mutex", "events/s", full_mu2,
                       NULL, 0);
    cairn_bench_report(b, "log.append.full.2t", "events/s", full2,
                       "log.append.full.2t.mutex", full_mu2);
}
