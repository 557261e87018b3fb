/*
 * projection.h — derived state: a projection folds a stream's events,
 * (state, event) -> state, into a state of at most state_max bytes (a
 * fixed struct or a serialized document).  Each projection keeps an LRU
 * (CLOCK) cache keyed by stream, kept current by the bus as events commit,
 * durable snapshots that bound replay, and answers "state as of seq N / as
 * of time T".  docs/PROJECTION.md explains the design.
 *
 * A projection lives on a bus (include/cairn/bus.h) and is registered there
 * by name, so the server finds it with cairn_projection_find.  Built-ins:
 * counts, last, merge, fsm (cairn_projection_create_builtin).
 *
 * Thread safety: every function may be called from any thread, except
 * cairn_projection_destroy, which must not race with calls on the same
 * projection.
 */
#ifndef CAIRN_PROJECTION_H
#define CAIRN_PROJECTION_H

#include <stddef.h>
#include <stdint.h>

#include "cairn/bus.h"
#include "cairn/cairn.h"
#include "cairn/fsm.h"
#include "cairn/limits.h"
#include "cairn/log.h"
#include "cairn/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_projection cairn_projection_t;

/*
 * What a projection computes.  Callbacks may run on any thread, several
 * at once on different state buffers (derives run on reader threads,
 * commit-time folds on the bus dispatcher); they must be pure functions of
 * their arguments and ctx, and must not block or call into the log.
 *
 * state is a buffer of cap (= state_max) bytes, 8-byte aligned; *len is
 * the state's current length.
 */
typedef struct cairn_projection_def {
    const char *name; /* 1..CAIRN_PROJECTION_NAME_MAX of [A-Za-z0-9_.-];
                         copied; names the snapshot file */
    uint32_t state_max; /* bytes; 0 = CAIRN_PROJECTION_STATE_MAX_DEFAULT */
    /* The state of a stream with no events.  NULL: empty (len 0). */
    int (*init)(void *ctx, void *state, size_t *len, size_t cap);
    /* Fold one event of the stream into state (required).  Returns 0, or
     * a negative code that fails the derive (use
     * CAIRN_EPROJECTION_STATE_TOO_LARGE when the result would not fit). */
    int (*fold)(void *ctx, void *state, size_t *len, size_t cap,
                const cairn_event_t *ev);
    /* Render state as JSON text into *json (malloc'd, not NUL-terminated
     * necessarily; *json_len bytes; the caller frees it).  NULL: the
     * state is rendered as {"state_base64":"..."}.  Returns 0 or -ENOMEM. */
    int (*to_json)(void *ctx, const void *state, size_t len, char **json,
                   size_t *json_len);
    void *ctx;
    /* 1: a new event invalidates the stream's cached entry instead of
     * being folded into it on the appending thread (for folds too costly
     * to run inside an append). */
    int invalidate_on_commit;
} cairn_projection_def_t;

typedef struct cairn_projection_opts {
    uint32_t cache_capacity;   /* streams cached; CAIRN_PROJECTION_CACHE_* */
    uint32_t snapshot_every;   /* CAIRN_PROJECTION_SNAPSHOT_EVERY_*; 0 off */
    uint32_t snapshot_streams; /* CAIRN_PROJECTION_SNAPSHOT_STREAMS_* */
    /* Where snapshots go: NULL = "<data_dir>/snapshots" of a durable log,
     * memory for an in-memory log.  Borrowed during create only. */
    const char *snapshot_dir;
    int snapshots_in_memory;   /* 1: never write files */
    /* Optional registry (borrowed; must outlive the projection):
     * cairn_projection_hits_total{projection}, _misses_total, and
     * cairn_projection_cached{projection} (entries). */
    cairn_metrics_t *metrics;
} cairn_projection_opts_t;

CAIRN_EXPORT void cairn_projection_opts_init(cairn_projection_opts_t *opts);

/*
 * Create a projection on bus and register it under def->name.  def and
 * opts are copied (opts may be NULL).  Returns 0 and *out,
 * CAIRN_EBAD_OPTION (name, state_max, capacity or snapshot options out of
 * range, fold NULL), CAIRN_EPROJECTION_EXISTS, CAIRN_EBUS_FULL (no
 * handler slot), CAIRN_ETOO_MANY_READERS, -errno (snapshot directory or
 * file), -ENOMEM.  Existing snapshots in the directory are loaded (a torn
 * or corrupt tail is cut off; snapshots newer than the log are ignored).
 */
CAIRN_EXPORT int cairn_projection_create(cairn_bus_t *bus,
                                         const cairn_projection_def_t *def,
                                         const cairn_projection_opts_t *opts,
                                         cairn_projection_t **out);

/* Unregister and free.  NULL is a no-op.  cairn_bus_close destroys the
 * projections still registered. */
CAIRN_EXPORT void cairn_projection_destroy(cairn_projection_t *p);

/* The projection registered under name on bus: 0 and *out (borrowed, valid
 * until destroyed), or CAIRN_EPROJECTION_UNKNOWN. */
CAIRN_EXPORT int cairn_projection_find(cairn_bus_t *bus, const char *name,
                                       cairn_projection_t **out);

CAIRN_EXPORT const char *cairn_projection_name(const cairn_projection_t *p);
CAIRN_EXPORT size_t cairn_projection_state_max(const cairn_projection_t *p);

/* What a returned state reflects. */
typedef struct cairn_projection_info {
    size_t state_len;    /* bytes of state */
    uint64_t seq;        /* seq of the last event folded (0: none) */
    uint64_t version;    /* its stream version = events folded */
    int64_t time_ns;     /* its time */
    int cached;          /* 1: served from the cache */
    int from_snapshot;   /* 1: the replay started from a snapshot */
    uint64_t replayed;   /* events this call folded */
} cairn_projection_info_t;

/*
 * The cached state of stream, lock-free (the hot path: no lock, no
 * allocation, no write to shared memory except a reference bit).  Copies
 * the state into state (cap bytes).  Returns 0 (hit), CAIRN_ENOT_FOUND
 * (not cached: use cairn_projection_get), -ENOBUFS (cap too small;
 * info->state_len says how much is needed).  info may be NULL.
 */
CAIRN_EXPORT int cairn_projection_read_cached(cairn_projection_t *p,
                                              const char *stream,
                                              size_t stream_len, void *state,
                                              size_t cap,
                                              cairn_projection_info_t *info);

/*
 * get_or_derive: the cached state if it includes every event of stream
 * with seq <= min_seq (0: any cached state), else derive it by replaying
 * only that stream (from its newest usable snapshot) and cache it.
 * Events committed but not yet dispatched by the bus may be missing from
 * a cached state; pass the seq of your own last append as min_seq to read
 * your writes.  A derive reads to the committed tail: a stream whose
 * events all sit behind another producer's uncommitted record reads as
 * its initial state (info->version 0).  Returns 0, CAIRN_ENOT_FOUND (no such stream), -ENOBUFS,
 * CAIRN_EEXPIRED (retention removed events the derive needs and no
 * snapshot covers them), the fold's code, a log read code.
 */
CAIRN_EXPORT int cairn_projection_get(cairn_projection_t *p,
                                      const char *stream, size_t stream_len,
                                      uint64_t min_seq, void *state,
                                      size_t cap,
                                      cairn_projection_info_t *info);

/*
 * Time travel: the state after the stream's last event with seq <= at_seq
 * (at_seq > 0), or, with at_seq 0, after the prefix of the stream whose
 * events are stamped at or before at_time_ns (the fold stops at the first
 * later-stamped event).  Never cached; starts from a snapshot when one is
 * old enough.  A stream with no event that early gives the initial state
 * with info->version 0.  Returns as cairn_projection_get, and
 * CAIRN_EBAD_OPTION when both at_seq and at_time_ns are 0.
 */
CAIRN_EXPORT int cairn_projection_get_at(cairn_projection_t *p,
                                         const char *stream,
                                         size_t stream_len, uint64_t at_seq,
                                         int64_t at_time_ns, void *state,
                                         size_t cap,
                                         cairn_projection_info_t *info);

/*
 * For the server: the state as JSON text, latest (at_seq = at_time_ns =
 * 0, through cairn_projection_get) or as of a seq or time.  *json is
 * malloc'd (free it), *json_len bytes, NUL-terminated.  Returns as the
 * calls above, or -ENOMEM.
 */
CAIRN_EXPORT int cairn_projection_get_json(cairn_projection_t *p,
                                           const char *stream,
                                           size_t stream_len, uint64_t at_seq,
                                           int64_t at_time_ns, char **json,
                                           size_t *json_len,
                                           cairn_projection_info_t *info);

typedef struct cairn_projection_stats {
    uint64_t hits;           /* cached reads served */
    uint64_t misses;         /* reads that had to derive */
    uint64_t derives;        /* derives run (misses and time travel) */
    uint64_t replayed;       /* events folded by derives */
    uint64_t folded;         /* events folded into cached entries on commit */
    uint64_t invalidated;    /* entries dropped by a commit (gap, fold
                                error, invalidate_on_commit) */
    uint64_t evictions;      /* entries evicted for space */
    uint64_t cached;         /* entries now */
    uint64_t snapshots_written;
    uint64_t snapshots_used;
    uint64_t snapshots_dropped; /* found inconsistent with the log */
} cairn_projection_stats_t;

CAIRN_EXPORT void cairn_projection_stats(cairn_projection_t *p,
                                         cairn_projection_stats_t *out);

/* ---- built-ins ----------------------------------------------------------- */

/*
 * Create a built-in projection registered as name (NULL: the kind):
 *   "counts"  events by type: {"total":N,"by_type":{"T":n,...},"other":n}
 *             (types that no longer fit state_max are counted in other)
 *   "last"    the last event: {"seq","version","type","time_ns","data"}
 *             (data omitted, with "data_omitted":true and its length, when
 *             the payload does not fit state_max)
 *   "merge"   RFC 7396 JSON merge patch of every event's JSON data into one
 *             document: {"doc":{...},"skipped":n} (n events whose data was
 *             not a JSON object or value); uses jansson
 *   "fsm"     the stream's state machine state.  With fsm (borrowed; must
 *             outlive the projection) the events are folded through it
 *             (trigger types move the state, others do not; time travel
 *             works): {"fsm_state":"NAME","fsm_state_id":N}.  Without,
 *             the current fsm_state number of the stream table is
 *             reported ({"fsm_state_id":N}) and time travel is refused
 *             with CAIRN_EBAD_OPTION.
 * Returns as cairn_projection_create, CAIRN_EPROJECTION_UNKNOWN for
 * another kind.
 */
CAIRN_EXPORT int cairn_projection_create_builtin(
    cairn_bus_t *bus, const char *kind, const char *name,
    const cairn_fsm_def_t *fsm, const cairn_projection_opts_t *opts,
    cairn_projection_t **out);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_PROJECTION_H */
