/*
 * crash_log.c — kill -9 durability test.
 *
 * Each iteration forks a child that opens the data directory (recovering
 * whatever the previous child left), then appends `sync` batches from
 * three threads and, after each append returns, records in shared memory
 * that its seqs were acknowledged together with a checksum of each
 * payload.  The parent SIGKILLs the child at a random moment, reopens the
 * directory and checks:
 *   - every acknowledged event is present and byte-identical;
 *   - seqs are contiguous from the first to the last (nothing follows a
 *     gap), and every stream's versions are contiguous;
 *   - after closing, cairn_log_verify() finds the directory clean.
 * Iterations are bounded by count and by time.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#include "cairn/log.h"

#define MAX_ACKS (1u << 20)
#ifdef CAIRN_SANITIZED
#define ITERATIONS 40
#else
#define ITERATIONS 300
#endif
#define TIME_BUDGET_S 100

typedef struct ack {
    _Atomic uint64_t seq; /* 0: empty */
    uint64_t sum;
} ack_t;

typedef struct shared {
    _Atomic uint64_t nacks;
    ack_t acks[MAX_ACKS];
} shared_t;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    x *= 0xc4ceb3fe1a85ec53u;
    return x ^ (x >> 33);
}

static uint64_t sum_of(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211u;
    return h;
}

typedef struct child_arg {
    cairn_log_t *log;
    shared_t *sh;
    int id;
    uint64_t seed;
} child_arg_t;

static void *child_thread(void *p)
{
    child_arg_t *a = p;
    uint64_t rng = a->seed;
    char payloads[3][96];
    for (uint64_t k = 0;; k++) {
        rng = mix(rng + k);
        size_t n = (size_t)(rng % 3) + 1;
        cairn_event_in_t evs[3];
        for (size_t i = 0; i < n; i++) {
            size_t len = (size_t)((rng >> (8 * i)) % 90) + 1;
            for (size_t j = 0; j < len; j++)
                payloads[i][j] = (char)mix(rng + i * 131 + j);
            memset(&evs[i], 0, sizeof evs[i]);
            evs[i].type = "crash.test";
            evs[i].type_len = 10;
            evs[i].payload = payloads[i];
            evs[i].payload_len = len;
        }
        char stream[16];
        int sl = snprintf(stream, sizeof stream, "c-%d-%u", a->id,
                          (unsigned)(rng % 5));
        cairn_append_result_t res;
        int rc = cairn_log_append(a->log, stream, (size_t)sl, evs, n,
                                  CAIRN_EXPECT_ANY, CAIRN_DURABILITY_SYNC,
                                  &res);
        if (rc != 0)
            _exit(3);
        for (size_t i = 0; i < n; i++) {
            uint64_t slot = atomic_fetch_add(&a->sh->nacks, 1);
            if (slot >= MAX_ACKS)
                _exit(0);
            a->sh->acks[slot].sum = sum_of(evs[i].payload, evs[i].payload_len);
            atomic_store(&a->sh->acks[slot].seq, res.first_seq + i);
        }
    }
    return NULL;
}

static void run_child(const char *dir, shared_t *sh, uint64_t seed)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.buffer_size_mb = 1;
    o.data_dir = dir;
    o.segment_bytes = 256 << 10;
    o.retention_bytes = 4u << 20;
    o.enhanced_mode = (seed & 1) != 0;
    cairn_log_t *log;
    if (cairn_log_open(&o, &log) != 0)
        _exit(2);
    pthread_t th[3];
    child_arg_t args[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (child_arg_t){log, sh, i, seed * 7 + (uint64_t)i};
        pthread_create(&th[i], NULL, child_thread, &args[i]);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    _exit(0);
}

/* Look an acknowledged seq up: returns its checksum or 0. */
static int cmp_ack(const void *x, const void *y)
{
    uint64_t a = ((const ack_t *)x)->seq, b = ((const ack_t *)y)->seq;
    return a < b ? -1 : a > b;
}

static void kill9_many_times(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-crash-XXXXXX";
    assert_non_null(mkdtemp(dir));
    shared_t *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    time_t start = time(NULL);
    uint64_t total_acked = 0, seed = (uint64_t)start;
    int it;
    for (it = 0; it < ITERATIONS && time(NULL) - start < TIME_BUDGET_S; it++) {
        atomic_store(&sh->nacks, 0);
        memset(sh->acks, 0, sizeof sh->acks);
        seed = mix(seed + (uint64_t)it);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            run_child(dir, sh, seed);
        /* Let it recover and run 2..40 ms, then kill it mid-flight. */
        struct timespec ts = {0, (long)(2 + seed % 39) * 1000000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status))
            fail_msg("child exited with %d before the kill",
                     WEXITSTATUS(status));

        /* Recover and check every acknowledged event. */
        uint64_t n = atomic_load(&sh->nacks);
        if (n > MAX_ACKS)
            n = MAX_ACKS;
        ack_t *acks = malloc((n + 1) * sizeof *acks);
        size_t na = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t s = atomic_load(&sh->acks[i].seq);
            if (s) { /* 0: killed between counting and recording */
                atomic_init(&acks[na].seq, s);
                acks[na++].sum = sh->acks[i].sum;
            }
        }
        qsort(acks, na, sizeof *acks, cmp_ack);
        total_acked += na;

        cairn_log_opts_t o;
        cairn_log_opts_init(&o);
        o.buffer_size_mb = 1;
        o.data_dir = dir;
        o.segment_bytes = 256 << 10;
        o.retention_bytes = 4u << 20;
        char err[512] = "";
        o.error_detail = err;
        o.error_detail_len = sizeof err;
        cairn_log_t *log;
        int rc = cairn_log_open(&o, &log);
        if (rc != 0)
            fail_msg("iteration %d: recovery failed: %s: %s", it,
                     cairn_strerror(rc), err);
        cairn_read_filter_t f = {0};
        cairn_log_iter_t *iter;
        assert_int_equal(cairn_log_iter_open(log, &f, &iter), 0);
        cairn_event_t ev;
        uint64_t expect = cairn_log_first_seq(log);
        size_t ai = 0;
        while (ai < na && atomic_load(&acks[ai].seq) < expect)
            ai++; /* removed by retention */
        while ((rc = cairn_log_iter_next(iter, &ev)) == 1) {
            assert_int_equal(ev.seq, expect);
            expect++;
            if (ai < na && atomic_load(&acks[ai].seq) == ev.seq) {
                if (acks[ai].sum != sum_of(ev.payload, ev.payload_len))
                    fail_msg("iteration %d: seq %lu differs from what was "
                             "acknowledged",
                             it, (unsigned long)ev.seq);
                ai++;
            }
        }
        assert_int_equal(rc, 0);
        if (ai != na)
            fail_msg("iteration %d: acknowledged seq %lu is missing (log ends "
                     "at %lu)",
                     it, (unsigned long)atomic_load(&acks[ai].seq),
                     (unsigned long)expect - 1);
        cairn_log_iter_close(iter);
        cairn_log_close(log);
        free(acks);

        cairn_verify_report_t vr;
        rc = cairn_log_verify(dir, &vr);
        if (rc != 0)
            fail_msg("iteration %d: verify: %s", it, vr.problem);
    }
    print_message("%d kill -9 iterations, %lu acknowledged events checked\n",
                  it, (unsigned long)total_acked);
    assert_true(it >= 20);
    assert_true(total_acked > 0);
    munmap(sh, sizeof *sh);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(kill9_many_times),
};

CAIRN_TEST_MAIN(tests)
