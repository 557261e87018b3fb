/* log_internal.h — the log handle shared by the lock-free log (log.c) and
 * its mutex twin (log_mutex.c). */
#ifndef CAIRN_LOG_INTERNAL_H
#define CAIRN_LOG_INTERNAL_H

#include <pthread.h>

#include "cairn/log.h"
#include "internal/table.h"
#include "log/idem.h"
#include "log/ring.h"
#include "storage/store.h"

struct cairn_log_iter {
    cairn_log_t *log;
    int slot;           /* ring reader slot pinning pos, or -1 */
    uint64_t pos;       /* next ring record position (slot >= 0) */
    uint64_t from_seq;  /* skip records before this seq */
    uint64_t next_seq;  /* the seq the iterator examines next */
    cairn__seg_cursor_t *sc; /* reading segments (durable logs), or NULL */
    cairn_read_filter_t f;
};

/* The twin's state: one mutex over everything. */
typedef struct cairn__log_mutex {
    pthread_mutex_t mu;
    pthread_cond_t space; /* signalled when space is freed or on close */
    uint64_t head_pos, head_seq;
    uint64_t drain_pos, drain_seq;
    uint64_t readers[CAIRN_RING_READERS_MAX];
    int closed;
} cairn__log_mutex_t;

/*
 * Called after every successful append (not for idempotent duplicates),
 * once its events are committed in memory and before the append waits for
 * durability, on the appending thread.  Must not block: it delays the
 * append that triggered it.  The bus and the metrics use it.
 */
typedef void (*cairn__commit_fn)(void *ctx, const char *stream,
                                 size_t stream_len,
                                 const cairn_append_result_t *res);
typedef struct cairn__commit_hook {
    cairn__commit_fn fn;
    void *ctx;
} cairn__commit_hook_t;
#define CAIRN__COMMIT_HOOKS_MAX 8

/* Add a commit hook (no removal; at most CAIRN__COMMIT_HOOKS_MAX).  Safe
 * while appends run: a hook added concurrently applies to later appends.
 * 0, or -ENOSPC. */
int cairn__log_add_commit_hook(cairn_log_t *log, cairn__commit_fn fn,
                               void *ctx);

struct cairn_log {
    cairn_log_opts_t o;
    cairn_table_t *table;
    cairn__idem_t *idem;
    cairn__ring_t ring; /* memory and record format shared by both twins;
                           the lock-free protocol only when enhanced */
    cairn__log_mutex_t m;
    cairn__store_t *store; /* durable segments, or NULL (memory only) */
    struct cairn__guard *guard; /* breakers, throttles, audit (src/table) */
    struct cairn_guard *guard_checks; /* opts.guard, or NULL */
    /* metrics (opts.metrics), all NULL when not asked for */
    struct cairn_metrics_counter *m_results[10];
    struct cairn_metrics_counter *m_events, *m_bytes;
    cairn_log_fsm_binding_t fsms[CAIRN_LOG_FSM_BINDINGS_MAX];
    unsigned nfsms;
    cairn__commit_hook_t hooks[CAIRN__COMMIT_HOOKS_MAX];
    _Atomic unsigned nhooks;
};

/* cairn__log_append_ex flags. */
#define CAIRN__APPEND_ALLOW_RESERVED 0x1u /* cairn's own '$' streams */

/* cairn_log_append with flags: the entry point for cairn's own writers
 * ($audit and the like), which may use reserved stream names. */
int cairn__log_append_ex(cairn_log_t *log, const char *stream,
                         size_t stream_len, const cairn_event_in_t *events,
                         size_t n, int64_t expected,
                         cairn_durability_t durability,
                         cairn_append_result_t *res, unsigned flags);

/*
 * The bound state machine's verdict on a batch appended to a stream whose
 * state word is `state`: 0 and *fsm_bits (the state word's new FSM field,
 * in place) when every trigger is a valid transition in turn, or
 * CAIRN_EFSM_INVALID_TRANSITION.  No machine bound: 0, bits unchanged.
 */
int cairn__fsm_check(const cairn_log_t *log, const char *stream,
                     size_t stream_len, const cairn_event_in_t *events,
                     size_t n, uint64_t state, uint64_t *fsm_bits);

int cairn__mlog_append(cairn_log_t *log, cairn__stream_t *s,
                       const char *stream, size_t stream_len,
                       const cairn_event_in_t *events, size_t n,
                       uint64_t bytes, int64_t expected,
                       cairn_append_result_t *res);
/* Pin a twin reader at the drain point: sets it->slot and it->pos and
 * returns the pinned seq in *seq. */
int cairn__mlog_iter_open(cairn_log_t *log, cairn_log_iter_t *it,
                          uint64_t *seq);
/* The writer consumed everything before (pos, seq). */
void cairn__mlog_release_to(cairn_log_t *log, uint64_t pos, uint64_t seq);
int cairn__mlog_iter_next(cairn_log_iter_t *it, cairn_event_t *ev);
void cairn__mlog_iter_close(cairn_log_iter_t *it);
void cairn__mlog_release(cairn_log_t *log, uint64_t upto);
void cairn__mlog_init(cairn_log_t *log);
void cairn__mlog_destroy(cairn_log_t *log);
uint64_t cairn__mlog_next_seq(cairn_log_t *log);
uint64_t cairn__mlog_first_seq(cairn_log_t *log);

/* Check expected_version against the current version v: 0 or
 * CAIRN_EVERSION_CONFLICT. */
static inline int cairn__expect_ok(int64_t expected, uint64_t v)
{
    if (expected == CAIRN_EXPECT_ANY)
        return 1;
    if (expected == CAIRN_EXPECT_NO_STREAM)
        return v == 0;
    if (expected == CAIRN_EXPECT_EXISTS)
        return v > 0;
    return (uint64_t)expected == v;
}

#endif
