/*
 * test_table.c — the stream guard's conformance suite (breaker, throttle,
 * audit, eviction) and the table's lookup properties.  Twin cases run
 * against both implementations: "<case>_lockfree" and "<case>_mutex".
 * Time is an injected clock, so every boundary is checked to the ns.
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "test.h"

#include "cairn/log.h"
#include "cairn/table.h"
#include "internal/guard_state.h"
#include "internal/table.h"
#include "log/log_internal.h"

static int ENHANCED = 1, MUTEX = 0;

#define SEC UINT64_C(1000000000)
#define TICK (UINT64_C(1) << CAIRN_BREAKER_TIME_UNIT_SHIFT)

static _Atomic uint64_t test_clock;

static uint64_t clock_fn(void *ctx)
{
    (void)ctx;
    return atomic_load(&test_clock);
}

static void set_time(uint64_t ns) { atomic_store(&test_clock, ns); }
static uint64_t now_ns(void) { return atomic_load(&test_clock); }
static void advance(uint64_t ns) { atomic_fetch_add(&test_clock, ns); }

static void base_opts(void **state, cairn_log_opts_t *o)
{
    cairn_log_opts_init(o);
    o->enhanced_mode = *(int *)*state;
    o->buffer_size_mb = 4;
    o->clock_ns = clock_fn;
    set_time(1000 * SEC);
}

static cairn_log_t *open_with(const cairn_log_opts_t *o)
{
    cairn_log_t *log = NULL;
    assert_int_equal(cairn_log_open(o, &log), 0);
    return log;
}

static cairn_event_in_t ev_of(const char *type)
{
    cairn_event_in_t e;
    memset(&e, 0, sizeof e);
    e.type = type;
    e.type_len = strlen(type);
    return e;
}

static int rec(cairn_log_t *log, const char *stream, cairn_outcome_t outcome,
               cairn_record_result_t *res)
{
    cairn_event_in_t e = ev_of("request");
    return cairn_table_record(log, stream, strlen(stream), &e, outcome, res);
}

static int append1(cairn_log_t *log, const char *stream,
                   cairn_append_result_t *res)
{
    cairn_event_in_t e = ev_of("t");
    return cairn_log_append(log, stream, strlen(stream), &e, 1,
                            CAIRN_EXPECT_ANY, CAIRN_DURABILITY_MEMORY, res);
}

static cairn_stream_state_t state_of(cairn_log_t *log, const char *stream)
{
    cairn_stream_state_t st;
    assert_int_equal(
        cairn_table_get_state(log, stream, strlen(stream), &st), 0);
    return st;
}

/* The $audit events, in order: types into what[], payloads into body[]. */
typedef struct audit_list {
    size_t n;
    char what[64][32];
    char body[64][512];
} audit_list_t;

static void read_audit(cairn_log_t *log, audit_list_t *a)
{
    memset(a, 0, sizeof *a);
    cairn_read_filter_t f;
    memset(&f, 0, sizeof f);
    f.stream = "$audit";
    f.stream_len = 6;
    cairn_log_iter_t *it;
    assert_int_equal(cairn_log_iter_open(log, &f, &it), 0);
    cairn_event_t ev;
    int rc;
    while ((rc = cairn_log_iter_next(it, &ev)) == 1) {
        if (a->n < 64) {
            snprintf(a->what[a->n], sizeof a->what[0], "%.*s",
                     (int)ev.type_len, ev.type);
            snprintf(a->body[a->n], sizeof a->body[0], "%.*s",
                     (int)ev.payload_len, (const char *)ev.payload);
        }
        a->n++;
    }
    assert_int_equal(rc, 0);
    cairn_log_iter_close(it);
}

static size_t count_what(const audit_list_t *a, const char *what)
{

    size_t k = 0;
    for (size_t i = 0; i < a->n && i < 64; i++)
        k += strcmp(a->what[i], what) == 0;
    return k;
}

/* ---- record / get_state -------------------------------------------------- */

static void record_accepts_and_counts(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    cairn_log_t *log = open_with(&o);
    cairn_record_result_t r;
    assert_int_equal(rec(log, "auth:client-17", CAIRN_OUTCOME_SUCCESS, &r), 0);
    assert_int_equal(r.decision, CAIRN_DECISION_ACCEPTED);
    assert_int_equal(r.version, 1);
    assert_int_equal(r.seq, 1);
    assert_true(r.outcome_applied);
    assert_int_equal(rec(log, "auth:client-17", CAIRN_OUTCOME_FAILURE, &r), 0);
    assert_int_equal(rec(log, "auth:client-17", CAIRN_OUTCOME_NONE, &r), 0);
    assert_int_equal(r.version, 3);
    advance(5 * SEC);
    cairn_stream_state_t st = state_of(log, "auth:client-17");
    assert_int_equal(st.version, 3);
    assert_int_equal(st.event_count, 3);
    assert_int_equal(st.successes, 1);
    assert_int_equal(st.failures, 1);
    assert_int_equal(st.first_seq, 1);
    assert_int_equal(st.last_seq, 3);
    assert_int_equal(st.breaker, CAIRN_BREAKER_CLOSED);
    assert_int_equal(st.throttled_now, 0);
    assert_int_equal(st.last_event_ns, now_ns() - 5 * SEC);
    assert_int_equal(st.fsm_state, 0);
    assert_int_equal(cairn_table_get_state(log, "nobody", 6, &st),
                     CAIRN_ENOT_FOUND);
    assert_int_equal(rec(log, "x", (cairn_outcome_t)7, &r), CAIRN_EBAD_OUTCOME);
    assert_int_equal(r.decision, CAIRN_DECISION_REJECTED);
    assert_int_equal(rec(log, "", CAIRN_OUTCOME_NONE, &r), CAIRN_ESTREAM_EMPTY);
    cairn_log_close(log);
}

static void reserved_streams_refused(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    cairn_log_t *log = open_with(&o);
    cairn_record_result_t r;
    cairn_append_result_t ar;
    assert_int_equal(rec(log, "$audit", CAIRN_OUTCOME_NONE, &r),
                     CAIRN_ESTREAM_RESERVED);
    assert_int_equal(append1(log, "$audit", &ar), CAIRN_ESTREAM_RESERVED);
    assert_int_equal(cairn_table_set_breaker(log, "$x", 2, CAIRN_BREAKER_OPEN),
                     CAIRN_ESTREAM_RESERVED);
    assert_int_equal(cairn_log_next_seq(log), 1);
    cairn_log_close(log);
}

/* ---- circuit breaker ----------------------------------------------------- */

static void breaker_opens_on_failures_within_window(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    cairn_log_t *log = open_with(&o); /* defaults: 5 failures in 60 s */
    cairn_record_result_t r;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_FAILURE, &r), 0);
        advance(SEC);
    }
    /* The window (60 s from the first failure) runs out: the count
     * restarts, so four more failures still leave it closed. */
    advance(60 * SEC);
    for (int i = 0; i < 4; i++)
        assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_FAILURE, &r), 0);
    assert_int_equal(state_of(log, "ep").breaker, CAIRN_BREAKER_CLOSED);
    uint32_t closed_epoch = r.breaker_epoch;
    /* Successes do not reset the count; the fifth failure opens it. */
    assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_SUCCESS, &r), 0);
    assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_FAILURE, &r), 0);
    cairn_stream_state_t st = state_of(log, "ep");
    assert_int_equal(st.breaker, CAIRN_BREAKER_OPEN);
    assert_int_equal(st.breaker_epoch, closed_epoch + 1);
    /* Open: fail fast, with the time until half-open. */
    cairn_append_result_t ar;
    uint64_t before = cairn_log_next_seq(log);
    assert_int_equal(append1(log, "ep", &ar), CAIRN_EBREAKER_OPEN);
    assert_true(ar.retry_after_ns > 30 * SEC - 2 * TICK &&
                ar.retry_after_ns <= 30 * SEC + 2 * TICK);
    assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_SUCCESS, &r),
                     CAIRN_EBREAKER_OPEN);
    assert_int_equal(r.decision, CAIRN_DECISION_BREAKER_OPEN);
    assert_int_equal(cairn_log_next_seq(log), before + 0);
    /* Other streams are unaffected. */
    assert_int_equal(rec(log, "other", CAIRN_OUTCOME_SUCCESS, &r), 0);
    audit_list_t a;
    read_audit(log, &a);
    assert_int_equal(count_what(&a, "breaker.opened"), 1);
    assert_non_null(strstr(a.body[0], "\"stream\":\"ep\""));
    assert_non_null(strstr(a.body[0], "\"why\":\"failure_threshold\""));
    assert_non_null(strstr(a.body[0], "\"failures\":5"));
    assert_int_equal(state_of(log, "ep").breaker_rejected, 2);
    cairn_log_close(log);
}

/* Open the breaker on "ep" at the current time; returns the open epoch. */
static uint32_t open_breaker(cairn_log_t *log)
{
    cairn_record_result_t r;
    for (int i = 0; i < 5; i++)
        assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_FAILURE, &r), 0);
    cairn_stream_state_t st = state_of(log, "ep");
    assert_int_equal(st.breaker, CAIRN_BREAKER_OPEN);
    return st.breaker_epoch;
}

static void breaker_half_opens_after_recovery(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    cairn_log_t *log = open_with(&o);
    const uint64_t opened = now_ns();
    uint32_t epoch = open_breaker(log);
    cairn_append_result_t ar;
    /* Never early: one ns before the recovery timeout it is still open,
     * and says exactly how long is left. */
    set_time(opened + 30 * SEC - 1);
    assert_int_equal(append1(log, "ep", &ar), CAIRN_EBREAKER_OPEN);
    assert_true(ar.retry_after_ns >= 1 && ar.retry_after_ns <= 2 * TICK);
    set_time(now_ns() + ar.retry_after_ns);
    /* Lazily half-open: the next append is the first probe. */
    assert_int_equal(state_of(log, "ep").breaker, CAIRN_BREAKER_HALF_OPEN);
    assert_int_equal(append1(log, "ep", &ar), 0);
    assert_int_equal(ar.breaker_epoch, epoch + 1);
    assert_int_equal(append1(log, "ep", &ar), 0);
    assert_int_equal(append1(log, "ep", &ar), 0);
    /* half_open_max_requests = 3 probes; the fourth is refused. */
    assert_int_equal(append1(log, "ep", &ar), CAIRN_EBREAKER_OPEN);
    cairn_stream_state_t st = state_of(log, "ep");
    assert_int_equal(st.breaker, CAIRN_BREAKER_HALF_OPEN);
    assert_int_equal(st.breaker_epoch, epoch + 1);
    audit_list_t a;
    read_audit(log, &a);
    assert_int_equal(count_what(&a, "breaker.half_opened"), 1);
    assert_non_null(strstr(a.body[1], "\"why\":\"recovery_timeout\""));
    assert_non_null(strstr(a.body[1], "\"rejected_while_open\":1"));
    cairn_log_close(log);
}

static void breaker_closes_after_probe_successes(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    o.breaker.half_open_max_requests = 5;
    o.breaker.success_threshold = 0.6; /* ceil(0.6 x 5) = 3 successes */
    cairn_log_t *log = open_with(&o);
    uint32_t epoch = open_breaker(log);
    advance(31 * SEC);
    cairn_append_result_t ar[5];
    for (int i = 0; i < 5; i++)
        assert_int_equal(append1(log, "ep", &ar[i]), 0);
    assert_int_equal(ar[4].breaker_epoch, epoch + 1);
    assert_int_equal(cairn_table_report(log, "ep", 2, epoch + 1,
                                        CAIRN_OUTCOME_SUCCESS), 0);
    assert_int_equal(cairn_table_report(log, "ep", 2, epoch + 1,
                                        CAIRN_OUTCOME_SUCCESS), 0);
    assert_int_equal(state_of(log, "ep").breaker, CAIRN_BREAKER_HALF_OPEN);
    assert_int_equal(cairn_table_report(log, "ep", 2, epoch + 1,
                                        CAIRN_OUTCOME_SUCCESS), 0);
    cairn_stream_state_t st = state_of(log, "ep");
    assert_int_equal(st.breaker, CAIRN_BREAKER_CLOSED);
    assert_int_equal(st.breaker_epoch, epoch + 2);
    /* The two probes still out report late: their epoch is gone. */
    assert_int_equal(cairn_table_report(log, "ep", 2, epoch + 1,
                                        CAIRN_OUTCOME_FAILURE),
                     CAIRN_ESTALE_OUTCOME);
    assert_int_equal(state_of(log, "ep").breaker, CAIRN_BREAKER_CLOSED);
    assert_int_equal(append1(log, "ep", &ar[0]), 0);
    audit_list_t a;
    read_audit(log, &a);
    assert_int_equal(count_what(&a, "breaker.closed"), 1);
    assert_non_null(strstr(a.body[2], "\"successes\":3"));
    cairn_log_close(log);
}

static void breaker_probe_failure_reopens(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    cairn_log_t *log = open_with(&o);
    uint32_t epoch = open_breaker(log);
    advance(30 * SEC + 2 * TICK);
    cairn_record_result_t r;
    assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_SUCCESS, &r), 0);
    assert_int_equal(r.breaker_epoch, epoch + 1);
    assert_true(r.outcome_applied);
    const uint64_t reopened = now_ns();
    assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_FAILURE, &r), 0);
    cairn_stream_state_t st = state_of(log, "ep");
    assert_int_equal(st.breaker, CAIRN_BREAKER_OPEN);
    assert_int_equal(st.breaker_epoch, epoch + 2);
    /* A new recovery timeout started at the failure. */
    set_time(reopened + 30 * SEC - 1);
    assert_int_equal(state_of(log, "ep").breaker, CAIRN_BREAKER_OPEN);
    set_time(reopened + 30 * SEC + 2 * TICK);
    assert_int_equal(state_of(log, "ep").breaker, CAIRN_BREAKER_HALF_OPEN);
    audit_list_t a;
    read_audit(log, &a);
    assert_int_equal(count_what(&a, "breaker.opened"), 2);
    assert_non_null(strstr(a.body[2], "\"why\":\"probe_failed\""));
    cairn_log_close(log);
}

static void breaker_half_open_without_outcomes_reopens(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    cairn_log_t *log = open_with(&o);
    uint32_t epoch = open_breaker(log);
    advance(30 * SEC + 2 * TICK);
    cairn_append_result_t ar;
    for (int i = 0; i < 3; i++)
        assert_int_equal(append1(log, "ep", &ar), 0);
    const uint64_t half = now_ns();
    /* Probes never report back (the Resilience4j trap): stuck no longer
     * than the recovery timeout. */
    set_time(half + 30 * SEC - 2 * TICK);
    assert_int_equal(state_of(log, "ep").breaker, CAIRN_BREAKER_HALF_OPEN);
    set_time(half + 30 * SEC + TICK);
    assert_int_equal(state_of(log, "ep").breaker, CAIRN_BREAKER_OPEN);
    assert_int_equal(append1(log, "ep", &ar), CAIRN_EBREAKER_OPEN);
    assert_true(ar.retry_after_ns > 29 * SEC);
    cairn_stream_state_t st = state_of(log, "ep");
    assert_int_equal(st.breaker, CAIRN_BREAKER_OPEN);
    assert_int_equal(st.breaker_epoch, epoch + 2);
    /* A probe's outcome arriving now is from an old epoch. */
    assert_int_equal(cairn_table_report(log, "ep", 2, epoch + 1,
                                        CAIRN_OUTCOME_SUCCESS),
                     CAIRN_ESTALE_OUTCOME);
    audit_list_t a;
    read_audit(log, &a);
    assert_non_null(strstr(a.body[a.n - 1], "\"why\":\"half_open_timeout\""));
    cairn_log_close(log);
}

static void stale_outcomes_ignored(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    cairn_log_t *log = open_with(&o);
    cairn_append_result_t early;
    assert_int_equal(append1(log, "ep", &early), 0);
    uint32_t epoch = open_breaker(log);
    assert_int_equal(early.breaker_epoch, epoch - 1);
    /* An outcome of an append admitted before the breaker opened. */
    assert_int_equal(cairn_table_report(log, "ep", 2, early.breaker_epoch,
                                        CAIRN_OUTCOME_FAILURE),
                     CAIRN_ESTALE_OUTCOME);
    advance(31 * SEC);
    cairn_append_result_t probe;
    assert_int_equal(append1(log, "ep", &probe), 0);
    /* Half-open: only outcomes for outstanding probes count. */
    assert_int_equal(cairn_table_report(log, "ep", 2, probe.breaker_epoch,
                                        CAIRN_OUTCOME_SUCCESS), 0);
    assert_int_equal(cairn_table_report(log, "ep", 2, probe.breaker_epoch,
                                        CAIRN_OUTCOME_SUCCESS),
                     CAIRN_ESTALE_OUTCOME);
    assert_int_equal(cairn_table_report(log, "ep", 2, probe.breaker_epoch,
                                        CAIRN_OUTCOME_FAILURE),
                     CAIRN_ESTALE_OUTCOME);
    assert_int_equal(state_of(log, "ep").breaker, CAIRN_BREAKER_HALF_OPEN);
    /* Counted in the statistics all the same. */
    cairn_stream_state_t st = state_of(log, "ep");
    assert_int_equal(st.successes, 2);
    assert_int_equal(st.failures, 7);
    assert_int_equal(cairn_table_report(log, "nope", 4, 0,
                                        CAIRN_OUTCOME_SUCCESS),
                     CAIRN_ENOT_FOUND);
    assert_int_equal(cairn_table_report(log, "ep", 2, 0, CAIRN_OUTCOME_NONE),
                     CAIRN_EBAD_OUTCOME);
    cairn_log_close(log);
}

static void breaker_off_never_opens(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    o.breaker.failure_threshold = 0;
    cairn_log_t *log = open_with(&o);
    cairn_record_result_t r;
    for (int i = 0; i < 50; i++)
        assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_FAILURE, &r), 0);
    assert_int_equal(state_of(log, "ep").breaker, CAIRN_BREAKER_CLOSED);
    assert_int_equal(state_of(log, "ep").failures, 50);
    cairn_log_close(log);
}

static void admin_sets_breaker(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    cairn_log_t *log = open_with(&o);
    cairn_record_result_t r;
    assert_int_equal(cairn_table_set_breaker(log, "ep", 2, CAIRN_BREAKER_OPEN),
                     0);
    assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_NONE, &r),
                     CAIRN_EBREAKER_OPEN);
    assert_int_equal(cairn_table_set_breaker(log, "ep", 2,
                                             CAIRN_BREAKER_HALF_OPEN), 0);
    assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_NONE, &r), 0);
    assert_int_equal(r.breaker_epoch, 2);
    assert_int_equal(cairn_table_set_breaker(log, "ep", 2,
                                             CAIRN_BREAKER_CLOSED), 0);
    assert_int_equal(rec(log, "ep", CAIRN_OUTCOME_NONE, &r), 0);
    assert_int_equal(r.breaker_epoch, 3);
    assert_int_equal(cairn_table_set_breaker(log, "ep", 2,
                                             (cairn_breaker_state_t)3),
                     CAIRN_EBAD_BREAKER_STATE);
    audit_list_t a;
    read_audit(log, &a);
    assert_int_equal(a.n, 3);
    for (size_t i = 0; i < a.n; i++)
        assert_non_null(strstr(a.body[i], "\"why\":\"admin\""));
    assert_string_equal(a.what[0], "breaker.opened");
    assert_string_equal(a.what[1], "breaker.half_opened");
    assert_string_equal(a.what[2], "breaker.closed");
    cairn_log_close(log);
}

/* ---- throttle ------------------------------------------------------------ */

static void gcra_boundary_exact(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    o.throttle.stream_rate = 10; /* T = 100 ms */
    o.throttle.stream_burst = 3;
    cairn_log_t *log = open_with(&o);
    cairn_record_result_t r;
    /* burst events pass at once, the next does not. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), 0);
    assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), CAIRN_ETHROTTLED);
    assert_int_equal(r.decision, CAIRN_DECISION_THROTTLED);
    assert_int_equal(r.retry_after_ns, 100000000u);
    uint64_t retry;
    assert_int_equal(cairn_table_is_throttled(log, "c", 1, &retry), 1);
    assert_int_equal(retry, 100000000u);
    /* One ns short: still throttled, by exactly 1 ns. */
    advance(100000000u - 1);
    assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), CAIRN_ETHROTTLED);
    assert_int_equal(r.retry_after_ns, 1);
    advance(1);
    assert_int_equal(cairn_table_is_throttled(log, "c", 1, &retry), 0);
    assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), 0);
    assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), CAIRN_ETHROTTLED);
    assert_int_equal(r.retry_after_ns, 100000000u);
    /* Idle refills the bucket to burst, never beyond. */
    advance(10 * SEC);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), 0);
    assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), CAIRN_ETHROTTLED);
    /* A batch larger than the burst can never pass. */
    advance(10 * SEC);
    cairn_event_in_t evs[4] = {ev_of("t"), ev_of("t"), ev_of("t"), ev_of("t")};
    cairn_append_result_t ar;
    assert_int_equal(cairn_log_append(log, "c", 1, evs, 4, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &ar),
                     CAIRN_ETHROTTLE_BATCH);
    assert_int_equal(cairn_log_append(log, "c", 1, evs, 3, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &ar), 0);
    /* Throttled appends stored nothing. */
    assert_int_equal(state_of(log, "c").version, 10);
    assert_int_equal(state_of(log, "c").throttled, 4);
    cairn_log_close(log);
}

static void gcra_uneven_rate_in_integer_ns(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    o.throttle.stream_rate = 3; /* T = 333333333 ns, not a whole ms */
    o.throttle.stream_burst = 1;
    cairn_log_t *log = open_with(&o);
    cairn_record_result_t r;
    advance(123456789);
    assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), 0);
    advance(1000);
    assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), CAIRN_ETHROTTLED);
    assert_int_equal(r.retry_after_ns, 333333333u - 1000);
    advance(333333333u - 1000 - 1);
    assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), CAIRN_ETHROTTLED);
    assert_int_equal(r.retry_after_ns, 1);
    advance(1);
    assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), 0);
    cairn_log_close(log);
}

static void throttle_audit_coalesced(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    o.throttle.stream_rate = 1;
    o.throttle.stream_burst = 1;
    cairn_log_t *log = open_with(&o);
    cairn_record_result_t r;
    assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r),
                         CAIRN_ETHROTTLED);
    assert_int_equal(state_of(log, "c").throttled_now, 1);
    advance(SEC);
    assert_int_equal(rec(log, "c", CAIRN_OUTCOME_NONE, &r), 0);
    audit_list_t a;
    read_audit(log, &a);
    assert_int_equal(a.n, 2);
    assert_string_equal(a.what[0], "throttle.started");
    assert_string_equal(a.what[1], "throttle.ended");
    assert_non_null(strstr(a.body[1], "\"throttled\":1000"));
    assert_non_null(strstr(a.body[1], "\"stream\":\"c\""));
    cairn_log_close(log);
}

static void audit_is_rate_limited(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    cairn_log_t *log = open_with(&o);
    /* 300 transitions at one instant: the burst is written, the rest are
     * counted, and the next event written reports them. */
    char name[16];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "s%d", i);
        assert_int_equal(cairn_table_set_breaker(log, name, strlen(name),
                                                 CAIRN_BREAKER_OPEN), 0);
    }
    uint64_t written, suppressed;
    cairn_table_audit_counts(log, &written, &suppressed);
    assert_int_equal(written, CAIRN_AUDIT_BURST);
    assert_int_equal(suppressed, 300 - CAIRN_AUDIT_BURST);
    advance(SEC);
    assert_int_equal(cairn_table_set_breaker(log, "late", 4,
                                             CAIRN_BREAKER_OPEN), 0);
    cairn_stream_info_t info;
    assert_int_equal(cairn_log_stream_info(log, "$audit", 6, &info), 0);
    assert_int_equal(info.version, CAIRN_AUDIT_BURST + 1);
    cairn_read_filter_t f;
    memset(&f, 0, sizeof f);
    f.from_seq = info.last_seq;
    cairn_log_iter_t *it;
    cairn_event_t ev;
    assert_int_equal(cairn_log_iter_open(log, &f, &it), 0);
    assert_int_equal(cairn_log_iter_next(it, &ev), 1);
    char body[512];
    snprintf(body, sizeof body, "%.*s", (int)ev.payload_len,
             (const char *)ev.payload);
    assert_non_null(strstr(body, "\"stream\":\"late\""));
    assert_non_null(strstr(body, "\"suppressed\":200"));
    cairn_log_iter_close(it);
    cairn_log_close(log);
}

/* ---- eviction ------------------------------------------------------------ */

static void eviction_rederives_from_log(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    o.max_endpoints = 4;
    o.idle_evict_secs = 10;
    cairn_log_t *log = open_with(&o);
    cairn_append_result_t ar;
    const char *names[] = {"a", "b", "c", "d"};
    for (int k = 0; k < 4; k++)
        for (int i = 0; i <= k; i++)
            assert_int_equal(append1(log, names[k], &ar), 0);
    /* Nobody idle yet: a fifth stream does not fit. */
    advance(5 * SEC);
    assert_int_equal(append1(log, "e", &ar), CAIRN_ETABLE_FULL);
    assert_int_equal(cairn_table_evictions(log), 0);
    advance(6 * SEC);
    assert_int_equal(append1(log, "e", &ar), 0);
    assert_true(cairn_table_evictions(log) >= 1);
    assert_true(cairn_table_count(log->table) <= 4);
    /* Every evicted stream comes back with its version and seqs. */
    advance(11 * SEC);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(append1(log, names[k], &ar), 0);
        assert_int_equal(ar.version, (uint64_t)k + 2);
        advance(11 * SEC);
    }
    cairn_stream_info_t info;
    assert_int_equal(cairn_log_stream_info(log, "d", 1, &info), 0);
    assert_int_equal(info.version, 5);
    assert_int_equal(info.first_seq, 7);
    /* And nothing acknowledged was lost: each stream's versions in the
     * log run 1..n exactly once. */
    for (int k = 0; k < 4; k++) {
        cairn_read_filter_t f;
        memset(&f, 0, sizeof f);
        f.stream = names[k];
        f.stream_len = 1;
        cairn_log_iter_t *it;
        cairn_event_t ev;
        assert_int_equal(cairn_log_iter_open(log, &f, &it), 0);
        uint64_t v = 0;
        while (cairn_log_iter_next(it, &ev) == 1)
            assert_int_equal(ev.version, ++v);
        assert_int_equal(v, (uint64_t)k + 2);
        cairn_log_iter_close(it);
    }
    cairn_log_close(log);
}

static void eviction_spares_guarded_streams(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    o.max_endpoints = 3; /* "open", "$audit" (its event), "failing" */
    o.idle_evict_secs = 1;
    cairn_log_t *log = open_with(&o);
    cairn_record_result_t r;
    /* One stream with an open breaker, one with a failure pending. */
    assert_int_equal(cairn_table_set_breaker(log, "open", 4,
                                             CAIRN_BREAKER_OPEN), 0);
    assert_int_equal(rec(log, "failing", CAIRN_OUTCOME_FAILURE, &r), 0);
    advance(5 * SEC);
    /* Forgetting them would reset their breakers: a flood of new names
     * must not be a way to do that ($audit stays too). */
    assert_int_equal(rec(log, "new", CAIRN_OUTCOME_NONE, &r),
                     CAIRN_ETABLE_FULL);
    assert_int_equal(cairn_table_evictions(log), 0);
    assert_int_equal(state_of(log, "open").breaker, CAIRN_BREAKER_OPEN);
    assert_int_equal(state_of(log, "failing").failures, 1);
    cairn_log_close(log);
}

static void eviction_off_when_zero(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    o.max_endpoints = 1;
    o.idle_evict_secs = 0;
    cairn_log_t *log = open_with(&o);
    cairn_append_result_t ar;
    assert_int_equal(append1(log, "a", &ar), 0);
    advance(100000 * SEC);
    assert_int_equal(append1(log, "b", &ar), CAIRN_ETABLE_FULL);
    cairn_log_close(log);
}

/* Churn through many names in a small table: live streams stay bounded,
 * chains stay short, and every stream keeps its own versions. */
static void eviction_churn_keeps_chains_short(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    o.max_endpoints = 256;
    o.idle_evict_secs = 1;
    cairn_log_t *log = open_with(&o);
    cairn_append_result_t ar;
    char name[32];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 4000; i++) {
            snprintf(name, sizeof name, "churn-%d", i);
            int rc = append1(log, name, &ar);
            assert_int_equal(rc, 0);
            assert_int_equal(ar.version, (uint64_t)round + 1);
            advance(SEC / 64);
        }
    }
    assert_true(cairn_table_count(log->table) <= 256);
    assert_true(cairn_table_evictions(log) >= 3 * 4000 - 256);
    /* Churn lengthens chains (keys placed while tombstones and dead slots
     * stood in their runs stay where they are; there is no rehash): up to
     * about 175 of 512 slots in 60 runs.  Bounded by half the table, where
     * uncleared tombstones would take every chain to the whole table. */
    assert_true(cairn__table_max_probe(log->table) <= 256);
    cairn_log_close(log);
}

/* A reader inside a section keeps an evicted slot from being reclaimed:
 * its name stays readable (ASan would flag a use after free), and the
 * stream revives into that same slot. */
typedef struct holder {
    cairn_log_t *log;
    _Atomic int stage;
    int name_ok;
} holder_t;

static void *hold_reference(void *arg)
{
    holder_t *h = arg;
    cairn_table_t *t = h->log->table;
    unsigned tok = cairn__table_enter(t);
    cairn__stream_t *s;
    if (cairn__table_find(t, "held", 4, 0, &s) != 0) {
        atomic_store(&h->stage, -1);
        cairn__table_exit(t, tok);
        return NULL;
    }
    atomic_store(&h->stage, 1);
    while (atomic_load(&h->stage) != 2)
        sched_yield();
    h->name_ok = s->name && s->name_len == 4 && memcmp(s->name, "held", 4) == 0;
    cairn__table_exit(t, tok);
    atomic_store(&h->stage, 3);
    return NULL;
}

static void eviction_waits_for_readers(void **state)
{
    cairn_log_opts_t o;
    base_opts(state, &o);
    o.max_endpoints = 2;
    o.idle_evict_secs = 1;
    cairn_log_t *log = open_with(&o);
    cairn_append_result_t ar;
    assert_int_equal(append1(log, "held", &ar), 0);
    assert_int_equal(append1(log, "held", &ar), 0);
    cairn__stream_t *orig;
    assert_int_equal(cairn__table_find(log->table, "held", 4, 0, &orig), 0);
    holder_t h = {log, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hold_reference, &h), 0);
    while (atomic_load(&h.stage) == 0)
        sched_yield();
    assert_int_equal(atomic_load(&h.stage), 1);
    /* Evict "held" (and churn) while the reader holds it. */
    char name[16];
    for (int i = 0; i < 6; i++) {
        advance(2 * SEC);
        snprintf(name, sizeof name, "n%d", i);
        assert_int_equal(append1(log, name, &ar), 0);
    }
    assert_true(cairn_table_evictions(log) >= 1);
    assert_int_not_equal(atomic_load(&orig->tag) & 3, 1); /* not live */
    assert_non_null(orig->name);                           /* not freed */
    atomic_store(&h.stage, 2);
    pthread_join(th, NULL);
    assert_true(h.name_ok);
    /* Once the reader left, churn reclaims the slot; the stream then comes
     * back from the log with its version. */
    for (int i = 6; i < 40; i++) {
        advance(2 * SEC);
        snprintf(name, sizeof name, "n%d", i);
        assert_int_equal(append1(log, name, &ar), 0);
    }
    /* Reclaimed: the slot no longer holds "held" (it may hold another). */
    assert_false(orig->name && orig->name_len == 4 &&
                 memcmp(orig->name, "held", 4) == 0);
    advance(2 * SEC);
    assert_int_equal(append1(log, "held", &ar), 0);
    assert_int_equal(ar.version, 3);
    cairn_log_close(log);
}

/* ---- lookups ------------------------------------------------------------- */

/* 1 M distinct names: every lookup still walks a short chain.  The bound
 * is the longest probe sequence, measured at 1 k and at 1 M streams. */
static void million_streams_keep_lookups_flat(void **state)
{
    cairn_table_opts_t to = {1u << 20, *(int *)*state};
    cairn_table_t *t;
    assert_int_equal(cairn_table_open(&to, &t), 0);
    char name[32];
    cairn__stream_t *s;
    uint64_t probe_1k = 0;
    for (uint32_t i = 0; i < (1u << 20); i++) {
        int len = snprintf(name, sizeof name, "endpoint:%u", i);
        assert_int_equal(cairn__table_find(t, name, (size_t)len, 1, &s), 0);
        if (i == 999)
            probe_1k = cairn__table_max_probe(t);
    }
    assert_int_equal(cairn_table_count(t), 1u << 20);
    uint64_t probe_1m = cairn__table_max_probe(t);
    /* Load 1/2 in both cases (the table is sized for max_endpoints): the
     * longest chain grows like log n, far from the n of a flooded bucket. */
    assert_true(probe_1k <= 16);
    assert_true(probe_1m <= 96);
    for (uint32_t i = 0; i < (1u << 20); i += 4099) {
        int len = snprintf(name, sizeof name, "endpoint:%u", i);
        assert_int_equal(cairn__table_find(t, name, (size_t)len, 0, &s), 0);
        assert_memory_equal(s->name, name, (size_t)len);
    }
    assert_int_equal(cairn__table_find(t, "endpoint:x", 10, 0, &s),
                     CAIRN_ENOT_FOUND);
    cairn_table_close(t);
}

/* Names that all land in one bucket under an unkeyed hash (SipHash with
 * the all-zero key an attacker might assume) spread out under the table's
 * random key. */
static void colliding_names_do_not_slow_lookups(void **state)
{
    const uint32_t max = 2048, nslots = 4096, want = 1500;
    cairn_table_opts_t to = {max, *(int *)*state};
    cairn_table_t *t;
    assert_int_equal(cairn_table_open(&to, &t), 0);
    unsigned char zero[crypto_shorthash_KEYBYTES] = {0};
    char name[32];
    uint32_t found = 0;
    cairn__stream_t *s;
    for (uint64_t i = 0; found < want; i++) {
        int len = snprintf(name, sizeof name, "evil-%llu",
                           (unsigned long long)i);
        unsigned char out[crypto_shorthash_BYTES];
        uint64_t h;
        crypto_shorthash(out, (const unsigned char *)name, (size_t)len, zero);
        memcpy(&h, out, sizeof h);
        if (((h >> 2) & (nslots - 1)) != 7)
            continue;
        assert_int_equal(cairn__table_find(t, name, (size_t)len, 1, &s), 0);
        found++;
    }
    /* Under the unkeyed hash this is one chain of 1500. */
    assert_true(cairn__table_max_probe(t) <= 24);
    cairn_table_close(t);
}

#define TWIN(fn)                                                               \
    {#fn "_lockfree", fn, NULL, NULL, &ENHANCED},                              \
        {#fn "_mutex", fn, NULL, NULL, &MUTEX}

static const struct CMUnitTest tests[] = {
    TWIN(record_accepts_and_counts),
    TWIN(reserved_streams_refused),
    TWIN(breaker_opens_on_failures_within_window),
    TWIN(breaker_half_opens_after_recovery),
    TWIN(breaker_closes_after_probe_successes),
    TWIN(breaker_probe_failure_reopens),
    TWIN(breaker_half_open_without_outcomes_reopens),
    TWIN(stale_outcomes_ignored),
    TWIN(breaker_off_never_opens),
    TWIN(admin_sets_breaker),
    TWIN(gcra_boundary_exact),
    TWIN(gcra_uneven_rate_in_integer_ns),
    TWIN(throttle_audit_coalesced),
    TWIN(audit_is_rate_limited),
    TWIN(eviction_rederives_from_log),
    TWIN(eviction_spares_guarded_streams),
    TWIN(eviction_off_when_zero),
    TWIN(eviction_churn_keeps_chains_short),
    TWIN(eviction_waits_for_readers),
    TWIN(million_streams_keep_lookups_flat),
    TWIN(colliding_names_do_not_slow_lookups),
};

CAIRN_TEST_MAIN(tests)
