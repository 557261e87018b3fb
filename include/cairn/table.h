/*
 * table.h — the stream table: per-stream packed atomic state, the circuit
 * breaker, the GCRA throttle, and the record / get_state / set_breaker /
 * is_throttled / report API that the gateway seeds call.
 *
 * The table lives inside a log (cairn_log_t); it is bounded (max_endpoints
 * streams) and keyed by SipHash-2-4 (libsodium crypto_shorthash) under a
 * random key drawn when the table is opened, so nobody outside the process
 * can choose names that land in one run of slots.  Slots are open-addressed
 * with linear probing over 2 x max_endpoints slots (rounded up to a power
 * of two).  docs/TABLE.md explains the design; its section "Stream state"
 * repeats the layout below.
 *
 * PACKED STATE: three 64-bit words on the slot's first cache line, next to
 * the key (tag and name).  Each word is updated only by a CAS loop (or, for
 * `state`, by the log holding the BUSY bit), never two words at once, so no
 * update needs a lock in enhanced mode.  (The issue asked for at most 16
 * bytes; docs/TABLE.md "Why 24 bytes" shows the arithmetic: a 64-bit ns
 * TAT, the log's 41 bits and the FSM byte leave 15 bits, and a breaker with
 * an epoch, a counter and a timestamp does not fit in 15.)
 *
 * state   (the log's word)
 *   bits    field       range / saturation
 *   0..39   version     0 .. 2^40-1 = number of events in the stream (its
 *                       event count); an append that would pass the
 *                       maximum fails with CAIRN_EVERSION_OVERFLOW, it never
 *                       wraps.  Advanced only by the log.
 *   40      busy        held by the one append that owns the stream for the
 *                       instant of its ring claim, and by a stream being
 *                       re-derived from the log after eviction
 *   41..48  fsm_state   0..255, reserved for the bound state machine
 *   49..63  reserved    zero
 *
 * breaker
 *   0..1    state       0 closed, 1 open, 2 half-open
 *   2..9    count       closed: failures in the current window (0..254;
 *                       failure_threshold is capped at 255);
 *                       half-open: bits 2..5 probes admitted (0..15),
 *                       bits 6..9 probe successes (0..15)
 *   10..43  time        breaker clock in units of 2^24 ns (16.78 ms) since
 *                       the log opened; 34 bits last 9.1 years, after which
 *                       it saturates (timers then read as expired).
 *                       closed: window start; open: opened at (rounded
 *                       up); half-open: entry or last probe outcome
 *   44..63  epoch       20 bits, +1 on every transition (wraps)
 *
 * throttle
 *   0..62   tat         GCRA theoretical arrival time, integer ns since the
 *                       log opened (292 years); 0 = never used
 *   63      throttled   set while a throttling episode is in progress (the
 *                       first refused append sets it, the next admitted
 *                       one clears it): one throttle.started and one
 *                       throttle.ended audit event per episode
 *
 * ABA.  A CAS on `breaker` decides from the word alone (new = f(old, now,
 * input)), so an A-B-A history cannot make it wrong; what must not repeat
 * is the epoch an outcome refers to.  Without an administrator forcing
 * states, every open period lasts at least recovery_timeout_secs (>= 1 s)
 * and a cycle has at most three transitions, so 2^20 epochs take at least
 * 4 days to wrap (121 days at the default 30 s): an outcome would have to
 * arrive that late, and then also find a probe outstanding, to be
 * misapplied.  `throttle` only moves forward (TAT grows by T > 0 on every
 * admission), so it never repeats a value.
 *
 * CONSTANT TIME.  Name lookups compare the 64-bit keyed tag and then the
 * whole name with sodium_memcmp (time depends on the length only, never on
 * how many bytes matched).  Nothing else is constant time: probe lengths,
 * breaker and throttle decisions depend on the data, which is not secret.
 *
 * Thread safety: every function may be called concurrently on one log.
 */
#ifndef CAIRN_TABLE_H
#define CAIRN_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "cairn/log.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_STATE_VERSION_BITS 40
#define CAIRN_STATE_VERSION_MASK ((UINT64_C(1) << 40) - 1)
#define CAIRN_STATE_BUSY (UINT64_C(1) << 40)
#define CAIRN_STATE_FSM_SHIFT 41
#define CAIRN_STATE_FSM_MASK (UINT64_C(0xff) << 41)

#define CAIRN_BREAKER_STATE_MASK UINT64_C(0x3)
#define CAIRN_BREAKER_COUNT_SHIFT 2
#define CAIRN_BREAKER_TIME_SHIFT 10
#define CAIRN_BREAKER_TIME_BITS 34
#define CAIRN_BREAKER_EPOCH_SHIFT 44
#define CAIRN_BREAKER_EPOCH_BITS 20
#define CAIRN_BREAKER_TIME_UNIT_SHIFT 24 /* 2^24 ns per breaker tick */

#define CAIRN_THROTTLE_TAT_MASK ((UINT64_C(1) << 63) - 1)
#define CAIRN_THROTTLE_EPISODE (UINT64_C(1) << 63)

typedef struct cairn_table cairn_table_t;

typedef struct cairn_table_opts {
    uint32_t max_endpoints; /* CAIRN_MAX_ENDPOINTS_DEFAULT / _CAP */
    int enhanced_mode;      /* 1 lock-free lookups and state, 0 mutex twin */
} cairn_table_opts_t;

/* Open a stand-alone table (the log opens its own).  Returns 0,
 * CAIRN_EBAD_OPTION, -ENOMEM, or -EIO when libsodium cannot initialise. */
CAIRN_EXPORT int cairn_table_open(const cairn_table_opts_t *opts,
                                  cairn_table_t **out);
/* NULL is a no-op.  No other call may be in progress. */
CAIRN_EXPORT void cairn_table_close(cairn_table_t *t);

/* Streams in the table now. */
CAIRN_EXPORT uint32_t cairn_table_count(const cairn_table_t *t);

/* The `state` word of a stream (a relaxed snapshot), or CAIRN_ENOT_FOUND. */
CAIRN_EXPORT int cairn_table_state(cairn_table_t *t, const char *name,
                                   size_t len, uint64_t *state);

/* ---- guard API (on a log's table) --------------------------------------- */

typedef enum cairn_outcome {
    CAIRN_OUTCOME_NONE = 0,    /* the event carries no outcome */
    CAIRN_OUTCOME_SUCCESS = 1,
    CAIRN_OUTCOME_FAILURE = 2,
} cairn_outcome_t;

typedef enum cairn_breaker_state {
    CAIRN_BREAKER_CLOSED = 0,
    CAIRN_BREAKER_OPEN = 1,
    CAIRN_BREAKER_HALF_OPEN = 2,
} cairn_breaker_state_t;

typedef enum cairn_decision {
    CAIRN_DECISION_ACCEPTED = 0,     /* appended: seq, version, epoch set */
    CAIRN_DECISION_THROTTLED = 1,    /* retry_after_ns set */
    CAIRN_DECISION_BREAKER_OPEN = 2, /* retry_after_ns: until half-open */
    CAIRN_DECISION_REJECTED = 3,     /* by validation or a guard: error */
} cairn_decision_t;

typedef struct cairn_record_result {
    cairn_decision_t decision;
    int error;               /* 0, or the code the call returned */
    uint64_t seq;            /* accepted: the event's seq */
    uint64_t version;        /* accepted: the stream's version after it */
    uint64_t retry_after_ns; /* throttled / breaker open: exact wait in ns */
    uint32_t breaker_epoch;  /* accepted: epoch to report a later outcome */
    int outcome_applied;     /* 1: the outcome was for the current epoch
                                (0: none given, or stale and ignored) */
} cairn_record_result_t;

/*
 * Record one event on a stream, with an optional outcome of the request it
 * describes: the breaker and the throttle admit it (or not), the log
 * appends it (memory durability, any expected version), and the outcome,
 * if any, is applied to the breaker under the epoch the event was admitted
 * in (a half-open probe's outcome is that probe's result).
 *
 * stream/event are borrowed for the call.  *res is always filled.
 * Returns 0 (accepted), CAIRN_ETHROTTLED, CAIRN_EBREAKER_OPEN,
 * CAIRN_ETHROTTLE_BATCH, CAIRN_EBAD_OUTCOME, or any code cairn_log_append
 * returns (decision REJECTED).  Reserved ('$') streams are refused.
 */
CAIRN_EXPORT int cairn_table_record(cairn_log_t *log, const char *stream,
                                    size_t stream_len,
                                    const cairn_event_in_t *event,
                                    cairn_outcome_t outcome,
                                    cairn_record_result_t *res);

/*
 * Report the outcome of an earlier append admitted under breaker_epoch
 * (cairn_append_result_t.breaker_epoch or cairn_record_result_t).  Counts
 * toward the stream's successes/failures always; moves the breaker only
 * when the epoch is still current (and, half-open, a probe is outstanding).
 * Returns 0 (applied), CAIRN_ESTALE_OUTCOME (counted, breaker unchanged),
 * CAIRN_ENOT_FOUND, CAIRN_EBAD_OUTCOME, a stream-name code.
 */
CAIRN_EXPORT int cairn_table_report(cairn_log_t *log, const char *stream,
                                    size_t stream_len, uint32_t breaker_epoch,
                                    cairn_outcome_t outcome);

typedef struct cairn_stream_state {
    uint64_t version;       /* == event count: versions run 1..version */
    uint64_t event_count;
    uint64_t first_seq, last_seq;
    uint64_t successes;     /* outcomes reported (saturate at 2^64-1) */
    uint64_t failures;
    uint64_t throttled;     /* appends refused by the throttle */
    uint64_t breaker_rejected; /* appends refused by the breaker */
    cairn_breaker_state_t breaker; /* as of now: an open breaker whose
                                      recovery timeout passed reads half-open */
    uint32_t breaker_epoch;
    int throttled_now;      /* 1: the next single event would be throttled */
    uint64_t retry_after_ns; /* when throttled_now or breaker open */
    uint64_t last_event_ns; /* monotonic guard clock (opts.clock_ns or
                               CLOCK_MONOTONIC_COARSE) of the last admitted
                               append; 0 if none since the stream entered
                               the table */
    uint8_t fsm_state;
} cairn_stream_state_t;

/* A stream's state.  Returns 0, CAIRN_ENOT_FOUND (not in the table), or a
 * stream-name code.  Reserved streams may be queried. */
CAIRN_EXPORT int cairn_table_get_state(cairn_log_t *log, const char *stream,
                                       size_t stream_len,
                                       cairn_stream_state_t *out);

/* Administrator: force a stream's breaker into a state (a new epoch; the
 * counters restart; open starts a recovery timeout now).  Creates the
 * stream's table entry when missing.  Audited.  Returns 0,
 * CAIRN_EBAD_BREAKER_STATE, CAIRN_ETABLE_FULL, a stream-name code. */
CAIRN_EXPORT int cairn_table_set_breaker(cairn_log_t *log, const char *stream,
                                         size_t stream_len,
                                         cairn_breaker_state_t state);

/* 1 when one event appended now would be throttled (and *retry_after_ns,
 * which may be NULL, says for how long), 0 when not or when the stream is
 * unknown, or a negative stream-name code.  Reads only. */
CAIRN_EXPORT int cairn_table_is_throttled(cairn_log_t *log, const char *stream,
                                          size_t stream_len,
                                          uint64_t *retry_after_ns);

/* Audit events written, and dropped by the audit rate limit, since open. */
CAIRN_EXPORT void cairn_table_audit_counts(cairn_log_t *log, uint64_t *written,
                                           uint64_t *suppressed);

/* Breaker transitions and throttle episodes since open, all streams
 * (counted even when the audit limiter suppressed their $audit event). */
typedef struct cairn_table_transitions {
    uint64_t breaker_opened;      /* closed or half-open -> open */
    uint64_t breaker_half_opened; /* open -> half-open */
    uint64_t breaker_closed;      /* half-open -> closed */
    uint64_t throttle_started;    /* throttling episodes begun */
} cairn_table_transitions_t;

CAIRN_EXPORT void cairn_table_transitions(cairn_log_t *log,
                                          cairn_table_transitions_t *out);

/* Streams evicted since open. */
CAIRN_EXPORT uint64_t cairn_table_evictions(cairn_log_t *log);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_TABLE_H */
