/*
 * bench_table.c — stream guard state benchmarks (issue "stream guard
 * state"):
 *
 *   table.record.1t              ns per record, one thread, one stream;
 *                                baseline: the mutex twin, same work
 *   table.record.2t.samekey      records/s, two threads on one stream;
 *                                baseline: table.record.2t.samekey.mutex
 *   table.record.2t.samekey.mutex  the twin, two threads on one stream;
 *                                baseline: the twin with one thread
 *   table.record.2t.distinct     records/s, two threads on two streams;
 *                                baseline: the twin on two streams
 *
 * What "record" measures: the state update the seed's record_event did,
 * on the packed state of an existing stream — admission (breaker check and
 * a GCRA CAS: the throttle is on at 10^9 events/s, so every record updates
 * the TAT word and none is refused) plus a success outcome (breaker epoch
 * check and the success counter), each reading the monotonic clock.  The
 * log append (ring claim and record copy) is not included; log.append.*
 * measures that.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cairn/log.h"
#include "internal/guard_state.h"
#include "log/log_internal.h"

#define BATCH 1024u

typedef struct ctx {
    cairn_log_t *log;
    cairn__stream_t *streams[2];
    uint64_t duration_ns;
    _Atomic int ready, go;
} ctx_t;

typedef struct worker {
    ctx_t *c;
    int id;
    int samekey;
    uint64_t ops, elapsed_ns;
    pthread_t th;
} worker_t;

static const char *NAMES[2] = {"bench:endpoint-a", "bench:endpoint-b"};

static void *record_thread(void *arg)
{
    worker_t *w = arg;
    ctx_t *c = w->c;
    cairn__guard_t *g = c->log->guard;
    const int k = w->samekey ? 0 : w->id;
    cairn__stream_t *s = c->streams[k];
    const char *name = NAMES[k];
    const size_t len = strlen(name);
    atomic_fetch_add(&c->ready, 1);
    while (!atomic_load(&c->go))
        ;
    unsigned tok = cairn__table_enter(c->log->table);
    uint64_t start = cairn_bench_now_ns(), now, ops = 0;
    do {
        for (unsigned i = 0; i < BATCH; i++) {
            cairn_append_result_t res;
            res.breaker_epoch = 0;
            int rc = cairn__guard_admit(g, s, name, len, 1, &res);
            if (rc == 0)
                rc = cairn__guard_outcome(g, s, name, len, res.breaker_epoch,
                                          CAIRN_OUTCOME_SUCCESS);
            /* A thread preempted between its clock read and its CAS
             * arrives "late" by the preemption: with tau = 1 ms the
             * throttle may refuse it, which is still a state update. */
            if (rc != 0 && rc != CAIRN_ETHROTTLED) {
                fprintf(stderr, "cairn: bench: record refused: %s\n",
                        cairn_strerror(rc));
                exit(1);
            }
        }
        ops += BATCH;
        now = cairn_bench_now_ns();
    } while (now - start < c->duration_ns);
    cairn__table_exit(c->log->table, tok);
    w->ops = ops;
    w->elapsed_ns = now - start;
    return NULL;
}

/* Aggregate records/s of nthreads recording (on one stream if samekey). */
static double run(int enhanced, int nthreads, int samekey,
                  uint64_t duration_ns)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.enhanced_mode = enhanced;
    o.buffer_size_mb = 1;
    o.throttle.stream_rate = 1000000000u;
    o.throttle.stream_burst = 1000000u;
    ctx_t c;
    memset(&c, 0, sizeof c);
    c.duration_ns = duration_ns;
    if (cairn_log_open(&o, &c.log) != 0) {
        fprintf(stderr, "cairn: bench: cannot open log\n");
        exit(1);
    }
    for (int k = 0; k < 2; k++) {
        if (cairn__table_find(c.log->table, NAMES[k], strlen(NAMES[k]), 1,
                              &c.streams[k]) != 0) {
            fprintf(stderr, "cairn: bench: cannot insert stream\n");
            exit(1);
        }
    }
    worker_t w[2];
    for (int i = 0; i < nthreads; i++) {
        w[i].c = &c;
        w[i].id = i;
        w[i].samekey = samekey;
        pthread_create(&w[i].th, NULL, record_thread, &w[i]);
    }
    while (atomic_load(&c.ready) < nthreads)
        ;
    atomic_store(&c.go, 1);
    double rate = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].th, NULL);
        rate += (double)w[i].ops * 1e9 / (double)w[i].elapsed_ns;
    }
    cairn_log_close(c.log);
    return rate;
}

void cairn_bench_suite_table(cairn_bench_t *b)
{
    const uint64_t d = cairn_bench_quick(b) ? 300000000u : 2000000000u;

    cairn_bench_progress(b, "table.record.1t");
    double lf1 = run(1, 1, 1, d), mu1 = run(0, 1, 1, d);
    cairn_bench_report(b, "table.record.1t", "ns", 1e9 / lf1,
                       "table.record.1t.mutex", 1e9 / mu1);

    cairn_bench_progress(b, "table.record.2t.samekey");
    double lf2 = run(1, 2, 1, d), mu2 = run(0, 2, 1, d);
    cairn_bench_report(b, "table.record.2t.samekey", "records/s", lf2,
                       "table.record.2t.samekey.mutex", mu2);
    cairn_bench_report(b, "table.record.2t.samekey.mutex", "records/s", mu2,
                       "table.record.1t.mutex", mu1);

    cairn_bench_progress(b, "table.record.2t.distinct");
    double lfd = run(1, 2, 0, d), mud = run(0, 2, 0, d);
    cairn_bench_report(b, "table.record.2t.distinct", "records/s", lfd,
                       "table.record.2t.distinct.mutex", mud);
}
