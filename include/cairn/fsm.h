/*
 * fsm.h — generic atomic state machines.
 *
 * Two objects:
 *
 *   cairn_fsm_def_t  a definition: named states and triggers (each numbered
 *                    0..255), a transition table state x trigger -> state,
 *                    optional guard functions.  Built once from config-style
 *                    lines, immutable afterwards, shared by any number of
 *                    machines and by the log (which validates events of
 *                    bound streams with cairn_fsm_def_next()).
 *   cairn_fsm_t      a machine: one current state driven through the table.
 *                    Transitions are a compare-and-swap on a packed 64-bit
 *                    (state, version) word; an optional context (up to
 *                    CAIRN_FSM_CONTEXT_MAX bytes) is published only by the
 *                    transition that won; cairn_fsm_wait_for_change() sleeps
 *                    on a futex; statistics are per-machine atomics.  Its
 *                    boring twin (opts.enhanced = 0) does the same under a
 *                    mutex and a condition variable.
 *
 * Definition syntax (one "key = value" per line; see docs/FSM.md):
 *
 *   initial    = CREATED
 *   state      = CREATED, MONITORING, ...          (optional, see below)
 *   transition = CREATED + POSITION_OPENED -> MONITORING
 *   transition = MONITORING + EXIT_CONDITION_MET | MANUAL_EXIT_REQUESTED
 *                -> EXIT_PENDING                   (one line in a file)
 *   transition = * - ERROR, CLOSED + ERROR_OCCURRED -> ERROR
 *   transition = * + RESET -> CREATED
 *
 * The part before '+' is the set of source states: a list of names, "*"
 * (every state) or "* - list" (every state except those listed).  The part
 * between '+' and '->' is one trigger or several.  Lists are separated by ','
 * or '|'.  Without any "state" line, states are declared by using them;
 * with one or more "state" lines, every state must be declared there (or be
 * the initial state) and any other name is an unknown-state error.  "*" is
 * expanded against the complete state set, wherever the line appears.
 * The initial state is always number 0; the other states are numbered in
 * order of first appearance, triggers likewise.
 */
#ifndef CAIRN_FSM_H
#define CAIRN_FSM_H

#include <stddef.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "cairn/limits.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_fsm_def cairn_fsm_def_t;
typedef struct cairn_fsm_builder cairn_fsm_builder_t;
typedef struct cairn_fsm cairn_fsm_t;

/* Where a definition went wrong: line is the 1-based line of the text (or
 * the line number the caller passed to cairn_fsm_builder_add), 0 when the
 * fault is in the definition as a whole (no initial state, no transition).
 * message is NUL-terminated and starts with "line N: " when line > 0. */
typedef struct cairn_fsm_error {
    unsigned line;
    char message[256];
} cairn_fsm_error_t;

/*
 * A guard: called while a transition from `from` on `trigger` is being
 * attempted, with the machine's guard_ctx and the caller's arg.  Return 0
 * to allow, non-zero to reject (CAIRN_EFSM_GUARD_REJECTED).  In the
 * lock-free machine a guard may run more than once for one call (again
 * after a lost compare-and-swap, with the new current state), so it must
 * be a pure function of its arguments and state it owns; it must not call
 * back into the machine.  In the twin it runs under the machine's mutex.
 */
typedef int (*cairn_fsm_guard_fn)(void *ctx, uint32_t from, uint32_t trigger,
                                  const void *arg);

/* "Every source state" for cairn_fsm_def_set_guard(). */
#define CAIRN_FSM_ANY_STATE UINT32_MAX

/* ---- building a definition ---------------------------------------------- */

/*
 * Parse a whole definition: `len` bytes of lines "key = value" with keys
 * initial, state, transition.  Blank lines and lines starting with '#' or
 * ';' are skipped; a value may be wrapped in double quotes.  The text is
 * borrowed for the call only.  Returns 0 and *out (free it with
 * cairn_fsm_def_free), CAIRN_EFSM_DEFINITION with *err filled (err may be
 * NULL), -ENOMEM.  Thread-safe (no shared state).
 */
CAIRN_EXPORT int cairn_fsm_def_parse(const char *text, size_t len,
                                     cairn_fsm_def_t **out,
                                     cairn_fsm_error_t *err);

/*
 * The same, one key at a time, for callers that read configuration
 * themselves (an INI handler): open a builder, add each key/value with its
 * line number (used in messages), then finish.  Keys other than initial,
 * state and transition are refused with CAIRN_EFSM_DEFINITION, so a caller
 * consumes its own keys (such as "streams") first.  Strings are copied.
 * finish may be called once; the builder is freed with close (NULL is a
 * no-op) whether or not finish succeeded.  A builder is single-threaded.
 * Returns 0, CAIRN_EFSM_DEFINITION (with *err), -ENOMEM.
 */
CAIRN_EXPORT int cairn_fsm_builder_open(cairn_fsm_builder_t **out);
CAIRN_EXPORT int cairn_fsm_builder_add(cairn_fsm_builder_t *b,
                                       const char *key, const char *value,
                                       unsigned line, cairn_fsm_error_t *err);
CAIRN_EXPORT int cairn_fsm_builder_finish(cairn_fsm_builder_t *b,
                                          cairn_fsm_def_t **out,
                                          cairn_fsm_error_t *err);
CAIRN_EXPORT void cairn_fsm_builder_close(cairn_fsm_builder_t *b);

/* Free a definition.  NULL is a no-op.  No machine may still use it. */
CAIRN_EXPORT void cairn_fsm_def_free(cairn_fsm_def_t *def);

/*
 * Attach a guard to the transition(s) from state `from` (or every source
 * state: CAIRN_FSM_ANY_STATE) on `trigger`; fn NULL removes it.  Returns 0,
 * CAIRN_EFSM_INVALID_TRANSITION when no such transition exists, -ENOMEM.
 * NOT thread-safe: call before the definition is shared (before the first
 * cairn_fsm_open or use by a log).  cairn_fsm_def_next() ignores guards.
 */
CAIRN_EXPORT int cairn_fsm_def_set_guard(cairn_fsm_def_t *def, uint32_t from,
                                         uint32_t trigger,
                                         cairn_fsm_guard_fn fn);

/* ---- reading a definition (thread-safe, any number of threads) ---------- */

/*
 * The transition from `state` on the event type `trigger` (trigger_len
 * bytes, not NUL-terminated, borrowed).  O(1), no allocation, no lock: a
 * bounded probe of an open-addressed hash built with the definition, then
 * one table load.  Returns
 *   0                              a valid transition; *next is its target
 *   1                              `trigger` is not a trigger of this
 *                                  definition: the event does not concern
 *                                  the machine (*next is left untouched)
 *   CAIRN_EFSM_INVALID_TRANSITION  it is a trigger, but not from `state`
 *                                  (also when state >= number of states)
 * Guards are not run (they belong to machines).
 */
CAIRN_EXPORT int cairn_fsm_def_next(const cairn_fsm_def_t *def,
                                    uint32_t state, const char *trigger,
                                    size_t trigger_len, uint32_t *next);

/* The same by trigger number: 0 and *next, CAIRN_EFSM_INVALID_TRANSITION
 * (also for out-of-range state), 1 when trigger >= number of triggers. */
CAIRN_EXPORT int cairn_fsm_def_next_id(const cairn_fsm_def_t *def,
                                       uint32_t state, uint32_t trigger,
                                       uint32_t *next);

/* Name -> number.  Returns 0 and *id, or CAIRN_EFSM_UNKNOWN_NAME. */
CAIRN_EXPORT int cairn_fsm_def_state_id(const cairn_fsm_def_t *def,
                                        const char *name, size_t len,
                                        uint32_t *id);
CAIRN_EXPORT int cairn_fsm_def_trigger_id(const cairn_fsm_def_t *def,
                                          const char *name, size_t len,
                                          uint32_t *id);

/* Number -> NUL-terminated name owned by def (valid until
 * cairn_fsm_def_free), or NULL when out of range. */
CAIRN_EXPORT const char *cairn_fsm_def_state_name(const cairn_fsm_def_t *def,
                                                  uint32_t id);
CAIRN_EXPORT const char *
cairn_fsm_def_trigger_name(const cairn_fsm_def_t *def, uint32_t id);

/* Counts: states (1..256), triggers (1..256), defined (state, trigger)
 * pairs after wildcard expansion.  The initial state is always 0. */
CAIRN_EXPORT uint32_t cairn_fsm_def_states(const cairn_fsm_def_t *def);
CAIRN_EXPORT uint32_t cairn_fsm_def_triggers(const cairn_fsm_def_t *def);
CAIRN_EXPORT uint32_t cairn_fsm_def_transitions(const cairn_fsm_def_t *def);

/* ---- machines ------------------------------------------------------------ */

/*
 * The packed word: bits 63..56 the state, bits 55..0 the version (the
 * number of transitions made, modulo 2^56).  56 bits: a compare-and-swap
 * can only be fooled (ABA) if exactly 2^56 transitions happen between a
 * thread's load and its CAS, over two years at one transition per
 * nanosecond.  The low 32 bits (all version) change on every transition,
 * which is what wait_for_change sleeps on.
 */
#define CAIRN_FSM_VERSION_BITS 56
#define CAIRN_FSM_VERSION_MASK ((UINT64_C(1) << CAIRN_FSM_VERSION_BITS) - 1)

static inline uint32_t cairn_fsm_word_state(uint64_t word)
{
    return (uint32_t)(word >> CAIRN_FSM_VERSION_BITS);
}

static inline uint64_t cairn_fsm_word_version(uint64_t word)
{
    return word & CAIRN_FSM_VERSION_MASK;
}

typedef struct cairn_fsm_opts {
    int enhanced;             /* 1 lock-free + futex (default), 0 the twin */
    void *guard_ctx;          /* passed to guards; borrowed */
    size_t context_size;      /* bytes of context, 0..CAIRN_FSM_CONTEXT_MAX */
    const void *initial_context; /* NULL = zeroes; copied */
    uint32_t latency_sample_every; /* time one call in this many per thread;
                                      rounded up to a power of two;
                                      CAIRN_FSM_LATENCY_SAMPLE_* */
} cairn_fsm_opts_t;

/* Fill opts with the defaults (enhanced, no context, sample every 64). */
CAIRN_EXPORT void cairn_fsm_opts_init(cairn_fsm_opts_t *opts);

/*
 * Create a machine in the definition's initial state with version 0.  def is
 * borrowed and must outlive the machine.  opts may be NULL for defaults.
 * Returns 0 and *out, CAIRN_EBAD_OPTION (context_size too large), -ENOMEM.
 */
CAIRN_EXPORT int cairn_fsm_open(const cairn_fsm_def_t *def,
                                const cairn_fsm_opts_t *opts,
                                cairn_fsm_t **out);

/* Free a machine.  NULL is a no-op.  No other call may be in progress
 * (including a wait_for_change) or follow. */
CAIRN_EXPORT void cairn_fsm_close(cairn_fsm_t *m);

/* What a fire did.  from/to are state numbers; word is the packed word
 * after a success, or the word the refusal was decided on. */
typedef struct cairn_fsm_result {
    uint32_t from;
    uint32_t to;
    uint64_t word;
} cairn_fsm_result_t;

/*
 * Fire trigger number `trigger`.  If the current state has a transition on
 * it and its guard (if any) allows it, the machine moves to the target with
 * version + 1 by one compare-and-swap; a lost CAS is retried against the
 * new state (the guard re-run).  If context is non-NULL (context_len must
 * equal opts.context_size), it replaces the machine's context — only if this
 * call's transition won, and never overwriting the context of a later
 * transition.  arg is passed to the guard.  All pointers are borrowed for
 * the call.  res may be NULL.
 *
 * Returns 0, CAIRN_EFSM_INVALID_TRANSITION (nothing changed; also for an
 * out-of-range trigger), CAIRN_EFSM_GUARD_REJECTED (nothing changed),
 * CAIRN_EBAD_OPTION (context_len wrong).  Thread-safe: any number of
 * threads may fire, read and wait on one machine.  Lock-free in the
 * enhanced machine except for publishing a context, which waits for a
 * concurrent context publication of the same machine to finish.
 */
CAIRN_EXPORT int cairn_fsm_fire(cairn_fsm_t *m, uint32_t trigger,
                                const void *arg, const void *context,
                                size_t context_len, cairn_fsm_result_t *res);

/* The same by trigger name (borrowed).  Also CAIRN_EFSM_UNKNOWN_NAME. */
CAIRN_EXPORT int cairn_fsm_fire_name(cairn_fsm_t *m, const char *trigger,
                                     size_t trigger_len, const void *arg,
                                     const void *context, size_t context_len,
                                     cairn_fsm_result_t *res);

/* The current packed word (acquire load; in the twin, under the mutex). */
CAIRN_EXPORT uint64_t cairn_fsm_word(const cairn_fsm_t *m);

/* The machine's definition (borrowed from cairn_fsm_open). */
CAIRN_EXPORT const cairn_fsm_def_t *cairn_fsm_def(const cairn_fsm_t *m);

/*
 * Copy the context into buf (len must equal opts.context_size) and the
 * packed word of the transition that published it into *word (may be NULL;
 * version 0 = the initial context).  The pair is consistent; the machine
 * may have moved on since (cairn_fsm_word() may be newer).  Never blocks a
 * writer; retries while one is publishing.  Returns 0 or
 * CAIRN_EBAD_OPTION.
 */
CAIRN_EXPORT int cairn_fsm_context(const cairn_fsm_t *m, void *buf,
                                   size_t len, uint64_t *word);

/*
 * Wait until the machine's word differs from `seen` or timeout_ns elapse
 * (0: do not sleep; UINT64_MAX: no timeout).  Returns 0 with the new word
 * in *now (may be NULL), or CAIRN_ETIMEOUT (*now = seen).  The enhanced
 * machine sleeps on a futex and is woken only by transitions made while a
 * waiter is registered; the twin sleeps on a condition variable.
 */
CAIRN_EXPORT int cairn_fsm_wait_for_change(cairn_fsm_t *m, uint64_t seen,
                                           uint64_t timeout_ns,
                                           uint64_t *now);

/* Latency buckets: bucket i counts sampled calls taking < 2^(i+5) ns
 * (and at least the previous bound): i = 0 < 32 ns, i = 1 < 64 ns, ...
 * i = 14 < 2^19 ns (about 524 us); the last counts the rest. */
#define CAIRN_FSM_LATENCY_BUCKETS 16

/* Statistics, read with relaxed loads (each counter exact, the set not a
 * snapshot).  attempts = successes + invalid + guard_rejected + unknown. */
typedef struct cairn_fsm_stats {
    uint64_t attempts;
    uint64_t successes;      /* == the version (mod 2^56) */
    uint64_t invalid;        /* CAIRN_EFSM_INVALID_TRANSITION */
    uint64_t guard_rejected; /* CAIRN_EFSM_GUARD_REJECTED */
    uint64_t unknown;        /* CAIRN_EFSM_UNKNOWN_NAME from fire_name */
    uint64_t cas_retries;    /* lost compare-and-swaps (0 in the twin) */
    uint64_t context_skips;  /* context not published: a later one won */
    uint64_t waits;          /* wait_for_change calls that had to sleep */
    uint64_t wait_timeouts;
    uint64_t wake_calls;     /* futex wakes / broadcasts made by fires */
    uint64_t latency_samples;
    uint64_t latency_min_ns; /* 0 when there is no sample */
    uint64_t latency_max_ns;
    uint64_t latency_sum_ns; /* avg = sum / samples */
    uint64_t latency_buckets[CAIRN_FSM_LATENCY_BUCKETS];
} cairn_fsm_stats_t;

/* Read the statistics.  Thread-safe; costs the writers nothing. */
CAIRN_EXPORT void cairn_fsm_stats(const cairn_fsm_t *m, cairn_fsm_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_FSM_H */
