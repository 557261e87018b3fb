/*
 * record.c — the stream guard API (include/cairn/table.h: record, report,
 * get_state, set_breaker, is_throttled) and the $audit writer.
 *
 * DESIGN.  The API is a thin layer over the log: cairn_table_record is a
 * cairn_log_append (whose admission step, cairn__guard_admit, applies the
 * breaker and the throttle) followed by the outcome, applied under the
 * epoch the append was admitted in.  Every function that touches a slot
 * does it inside a table section, so an eviction cannot reclaim the slot
 * under it.
 *
 * Audit.  Breaker transitions and throttling episodes are decided by the
 * one CAS that makes them, so each is written once however many threads
 * race; a throttling episode writes one throttle.started and one
 * throttle.ended (with the count refused), and appends refused while a
 * breaker is open are counted into its next transition event, so a flood
 * of refused appends costs no audit writes.  On top of that a log-wide GCRA
 * bucket (CAIRN_AUDIT_RATE per second, CAIRN_AUDIT_BURST at once) bounds
 * what an attack flipping many streams can write; events over it are
 * counted and the next event written carries "suppressed": n.  Events are
 * appended after the CAS that decided them, so racing threads may write
 * two transitions of one stream out of order: the "epoch" each carries
 * (+1 per transition) is the order.
 */
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "cairn/limits.h"
#include "internal/clock.h"
#include "internal/guard_state.h"
#include "log/log_internal.h"

#define AUDIT_STREAM "$audit"

static int check_outcome(cairn_outcome_t o, int allow_none)
{
    if (o == CAIRN_OUTCOME_SUCCESS || o == CAIRN_OUTCOME_FAILURE ||
        (allow_none && o == CAIRN_OUTCOME_NONE))
        return 0;
    return CAIRN_EBAD_OUTCOME;
}

static int is_guard_code(int rc)
{
    return rc <= -1200 && rc > -1300;
}

/* Errors an append can return after it was admitted (so a half-open probe
 * was taken and no event will report on it). */
static int failed_after_admit(int rc)
{
    return rc == CAIRN_ELOG_FULL || rc == CAIRN_ECLOSED ||
           rc == CAIRN_EREAD_ONLY || rc == CAIRN_EVERSION_OVERFLOW ||
           rc == CAIRN_EIO;
}

int cairn_table_record(cairn_log_t *log, const char *stream,
                       size_t stream_len, const cairn_event_in_t *event,
                       cairn_outcome_t outcome, cairn_record_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->decision = CAIRN_DECISION_REJECTED;
    int rc = check_outcome(outcome, 1);
    if (rc == 0)
        rc = cairn_log_check_stream(stream, stream_len, 0);
    if (rc == 0 && !event)
        rc = CAIRN_EBATCH_EMPTY;
    if (rc) {
        res->error = rc;
        return rc;
    }
    CAIRN__TABLE_SECTION(log->table);
    cairn_append_result_t ar;
    rc = cairn_log_append(log, stream, stream_len, event, 1, CAIRN_EXPECT_ANY,
                          CAIRN_DURABILITY_MEMORY, &ar);
    res->error = rc;
    if (rc == CAIRN_ETHROTTLED || rc == CAIRN_EBREAKER_OPEN) {
        res->decision = rc == CAIRN_ETHROTTLED ? CAIRN_DECISION_THROTTLED
                                               : CAIRN_DECISION_BREAKER_OPEN;
        res->retry_after_ns = ar.retry_after_ns;
        return rc;
    }
    cairn__stream_t *s = NULL;
    if (rc < 0) {
        if (is_guard_code(rc))
            cairn__audit_guard_rejected(log, stream, stream_len, rc);
        if (failed_after_admit(rc) &&
            cairn__table_find(log->table, stream, stream_len, 0, &s) == 0)
            cairn__guard_unadmit(log->guard, s, ar.breaker_epoch);
        return rc;
    }
    res->decision = CAIRN_DECISION_ACCEPTED;
    res->seq = ar.last_seq;
    res->version = ar.version;
    res->breaker_epoch = ar.breaker_epoch;
    if (outcome != CAIRN_OUTCOME_NONE &&
        cairn__table_find(log->table, stream, stream_len, 0, &s) == 0)
        res->outcome_applied =
            cairn__guard_outcome(log->guard, s, stream, stream_len,
                                 ar.breaker_epoch, outcome) == 0;
    return 0;
}

int cairn_table_report(cairn_log_t *log, const char *stream,
                       size_t stream_len, uint32_t breaker_epoch,
                       cairn_outcome_t outcome)
{
    int rc = check_outcome(outcome, 0);
    if (rc == 0)
        rc = cairn_log_check_stream(stream, stream_len, 0);
    if (rc)
        return rc;
    CAIRN__TABLE_SECTION(log->table);
    cairn__stream_t *s;
    rc = cairn__table_find(log->table, stream, stream_len, 0, &s);
    if (rc)
        return rc;
    return cairn__guard_outcome(log->guard, s, stream, stream_len,
                                breaker_epoch, outcome);
}

int cairn_table_get_state(cairn_log_t *log, const char *stream,
                          size_t stream_len, cairn_stream_state_t *out)
{
    memset(out, 0, sizeof *out);
    int rc = cairn_log_check_stream(stream, stream_len, 1);
    if (rc)
        return rc;
    CAIRN__TABLE_SECTION(log->table);
    cairn__stream_t *s;
    rc = cairn__table_find(log->table, stream, stream_len, 0, &s);
    if (rc)
        return rc;
    /* Wait out an in-flight append so version and seqs agree. */
    uint64_t st = cairn__stream_settled(s);
    out->version = st & CAIRN_STATE_VERSION_MASK;
    out->event_count = out->version;
    out->fsm_state = (uint8_t)((st & CAIRN_STATE_FSM_MASK) >>
                               CAIRN_STATE_FSM_SHIFT);
    out->first_seq = atomic_load_explicit(&s->first_seq, memory_order_relaxed);
    out->last_seq = atomic_load_explicit(&s->last_seq, memory_order_relaxed);
    cairn__guard_read(log->guard, s, out);
    return 0;
}

int cairn_table_set_breaker(cairn_log_t *log, const char *stream,
                            size_t stream_len, cairn_breaker_state_t state)
{
    if (state != CAIRN_BREAKER_CLOSED && state != CAIRN_BREAKER_OPEN &&
        state != CAIRN_BREAKER_HALF_OPEN)
        return CAIRN_EBAD_BREAKER_STATE;
    int rc = cairn_log_check_stream(stream, stream_len, 0);
    if (rc)
        return rc;
    CAIRN__TABLE_SECTION(log->table);
    cairn__stream_t *s;
    rc = cairn__table_find(log->table, stream, stream_len, 1, &s);
    if (rc)
        return rc;
    cairn__guard_set_breaker(log->guard, s, stream, stream_len, state);
    return 0;
}

int cairn_table_is_throttled(cairn_log_t *log, const char *stream,
                             size_t stream_len, uint64_t *retry_after_ns)
{
    if (retry_after_ns)
        *retry_after_ns = 0;
    int rc = cairn_log_check_stream(stream, stream_len, 1);
    if (rc)
        return rc;
    CAIRN__TABLE_SECTION(log->table);
    cairn__stream_t *s;
    if (cairn__table_find(log->table, stream, stream_len, 0, &s) != 0)
        return 0;
    return cairn__guard_throttled(log->guard, s, retry_after_ns);
}

void cairn_table_audit_counts(cairn_log_t *log, uint64_t *written,
                              uint64_t *suppressed)
{
    if (written)
        *written = atomic_load_explicit(&log->guard->audit_written,
                                        memory_order_relaxed);
    if (suppressed)
        *suppressed = atomic_load_explicit(&log->guard->audit_suppressed,
                                           memory_order_relaxed);
}

void cairn_table_transitions(cairn_log_t *log, cairn_table_transitions_t *t)
{
    cairn__guard_t *g = log->guard;
    t->breaker_opened =
        atomic_load_explicit(&g->breaker_opened, memory_order_relaxed);
    t->breaker_half_opened =
        atomic_load_explicit(&g->breaker_half_opened, memory_order_relaxed);
    t->breaker_closed =
        atomic_load_explicit(&g->breaker_closed, memory_order_relaxed);
    t->throttle_started =
        atomic_load_explicit(&g->throttle_started, memory_order_relaxed);
}

uint64_t cairn_table_evictions(cairn_log_t *log)
{
    return atomic_load_explicit(&log->table->evictions, memory_order_relaxed);
}

/* ---- $audit -------------------------------------------------------------- */

/* The log-wide audit bucket: GCRA on one word, like a stream's throttle. */
static int audit_admit(cairn__guard_t *g)
{
    const uint64_t interval = 1000000000u / CAIRN_AUDIT_RATE;
    const uint64_t tau = interval * CAIRN_AUDIT_BURST;
    uint64_t now = cairn__guard_now(g);
    uint64_t rel = now > g->base_ns ? now - g->base_ns : 0;
    /* Relaxed: the word is its own meaning (see guard_state.c). */
    uint64_t tat = atomic_load_explicit(&g->audit_tat, memory_order_relaxed);
    int fresh = 0;
    for (;;) {
        uint64_t next = (tat > rel ? tat : rel) + interval;
        if (next > rel + tau) {
            /* Refuse only on a fresh clock: a thread preempted after
             * reading it would judge by a moment others have left behind
             * (regression: stress_table under TSan suppressed audits). */
            if (fresh)
                return 0;
            now = cairn__guard_now(g);
            rel = now > g->base_ns ? now - g->base_ns : 0;
            fresh = 1;
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&g->audit_tat, &tat, next,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
            return 1;
    }
}

static size_t json_escape(char *out, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 7 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

void cairn__audit(cairn__guard_t *g, const char *what, const char *stream,
                  size_t stream_len, const char *fields)
{
    /* Transitions are counted before the audit limiter decides, so the
     * metrics stay exact when audit events are suppressed. */
    _Atomic uint64_t *counter = !strcmp(what, "breaker.opened")
                                    ? &g->breaker_opened
                                : !strcmp(what, "breaker.half_opened")
                                    ? &g->breaker_half_opened
                                : !strcmp(what, "breaker.closed")
                                    ? &g->breaker_closed
                                : !strcmp(what, "throttle.started")
                                    ? &g->throttle_started
                                    : NULL;
    if (counter)
        atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    if (!audit_admit(g)) {
        atomic_fetch_add_explicit(&g->audit_suppressed, 1,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&g->audit_suppressed_new, 1,
                                  memory_order_relaxed);
        return;
    }
    uint64_t suppressed = atomic_exchange_explicit(&g->audit_suppressed_new,
                                                   0, memory_order_relaxed);
    char name[2 * CAIRN_STREAM_MAX * 3 + 8];
    size_t nl = json_escape(name, sizeof name, stream, stream_len);
    char body[sizeof name + 512];
    int len = snprintf(body, sizeof body,
                       "{\"stream\":\"%.*s\",\"what\":\"%s\"%s%s"
                       ",\"suppressed\":%llu}",
                       (int)nl, name, what, fields && fields[0] ? "," : "",
                       fields ? fields : "", (unsigned long long)suppressed);
    cairn_event_in_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = what;
    ev.type_len = strlen(what);
    ev.payload = body;
    ev.payload_len = (size_t)len < sizeof body ? (size_t)len : sizeof body - 1;
    ev.flags = CAIRN_EVENT_JSON;
    cairn_append_result_t res;
    int rc = cairn__log_append_ex(g->log, AUDIT_STREAM, strlen(AUDIT_STREAM),
                                  &ev, 1, CAIRN_EXPECT_ANY,
                                  CAIRN_DURABILITY_MEMORY, &res,
                                  CAIRN__APPEND_ALLOW_RESERVED);
    if (rc < 0) {
        /* Not written: count it, and let the next one report it. */
        atomic_fetch_add_explicit(&g->audit_suppressed, 1,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&g->audit_suppressed_new, suppressed + 1,
                                  memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&g->audit_written, 1, memory_order_relaxed);
}

void cairn__audit_guard_rejected(cairn_log_t *log, const char *stream,
                                 size_t stream_len, int code)
{
    char fields[160];
    snprintf(fields, sizeof fields, "\"why\":\"%s\",\"code\":%d",
             cairn_err_name(code), code);
    cairn__audit(log->guard, "guard.rejected", stream, stream_len, fields);
}
