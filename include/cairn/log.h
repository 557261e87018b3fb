/*
 * log.h — the event model and the log.
 *
 * Applications append batches of typed events to named streams.  Every event
 * gets a global sequence number (seq, contiguous from 1 across the log) and a
 * per-stream version (1, 2, 3, ... within its stream); a batch gets
 * consecutive seqs and versions or nothing.  Events live in a bounded
 * in-memory ring (buffer_size_mb) until they are released.
 *
 * Two implementations sit behind this one interface (opts.enhanced_mode):
 * the lock-free log (ring claim with one fetch-add, per-record commit
 * markers, per-stream CAS) and its boring twin (one mutex).  They pass the
 * same conformance suite (tests/unit/test_log.c).
 *
 * Thread safety: every function may be called from any thread concurrently
 * on one log, except cairn_log_close(), which must be the last call, and the
 * iterator functions, which are per-iterator single-threaded.
 */
#ifndef CAIRN_LOG_H
#define CAIRN_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "cairn/limits.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_log cairn_log_t;
typedef struct cairn_log_iter cairn_log_iter_t;

/* What an append waits for before it returns. */
typedef enum cairn_durability {
    CAIRN_DURABILITY_MEMORY = 0, /* committed in the ring */
    CAIRN_DURABILITY_OS = 1,     /* written to the page cache */
    CAIRN_DURABILITY_SYNC = 2,   /* fdatasync'd */
} cairn_durability_t;

/* expected_version: a version number >= 0 (0 means "the stream has no
 * events"), or one of these. */
#define CAIRN_EXPECT_ANY INT64_C(-1)
#define CAIRN_EXPECT_NO_STREAM INT64_C(-2)
#define CAIRN_EXPECT_EXISTS INT64_C(-3)

/* Event flags. */
#define CAIRN_EVENT_JSON 0x1u /* payload is a JSON document (else binary) */

/*
 * One event to append.  All pointers are borrowed for the duration of the
 * call only; the log copies what it keeps.  Lengths are in bytes.
 *   type            1..CAIRN_TYPE_MAX bytes of UTF-8, no control characters
 *   payload         0..max_event_bytes bytes (NULL allowed when length is 0)
 *   id              optional idempotency id, 0..CAIRN_ID_MAX bytes UTF-8
 *   correlation_id, causation_id  optional, 0..CAIRN_ID_MAX bytes UTF-8
 *   time_ns         wall-clock time in ns since the epoch; 0 = now
 */
typedef struct cairn_event_in {
    const char *type;
    size_t type_len;
    const void *payload;
    size_t payload_len;
    uint32_t flags;
    const char *id;
    size_t id_len;
    const char *correlation_id;
    size_t correlation_id_len;
    const char *causation_id;
    size_t causation_id_len;
    int64_t time_ns;
} cairn_event_in_t;

/*
 * One event as read.  Every pointer points into the log's memory (zero
 * copy) or the iterator's buffer, and stays valid until the next call on
 * the same iterator or its close.  Strings are not NUL-terminated.
 */
typedef struct cairn_event {
    uint64_t seq;
    uint64_t version;
    uint64_t prev_seq; /* seq of the previous event of this stream, 0 if
                          this is its first (a back-link for replay) */
    int64_t time_ns;
    uint32_t flags;
    uint32_t stream_len;
    const char *stream;
    uint32_t type_len;
    const char *type;
    uint32_t id_len;
    const char *id;
    uint32_t correlation_id_len;
    const char *correlation_id;
    uint32_t causation_id_len;
    const char *causation_id;
    uint32_t payload_len;
    const void *payload;
} cairn_event_t;

typedef struct cairn_append_result {
    uint64_t first_seq; /* seq of the batch's first event */
    uint64_t last_seq;  /* seq of its last event */
    uint64_t version;   /* stream version after the batch (its last event) */
    int duplicate;      /* 1: the idempotency id was seen; nothing stored,
                           the fields above are the original append's */
    uint64_t actual_version; /* on CAIRN_EVERSION_CONFLICT: the stream's
                                version at the time of the check */
    uint64_t retry_after_ns; /* on CAIRN_ETHROTTLED (and CAIRN_EBREAKER_OPEN:
                                time until half-open), exact in ns */
    uint32_t breaker_epoch;  /* epoch the append was admitted under; report
                                its outcome with this epoch */
} cairn_append_result_t;

/* [breaker]: per-stream circuit breaker (see include/cairn/table.h). */
typedef struct cairn_breaker_opts {
    uint32_t failure_threshold;      /* failures within the window that open
                                        it; default 5; 0 = breaker off */
    uint32_t failure_window_secs;    /* default 60 */
    uint32_t recovery_timeout_secs;  /* open -> half-open after; default 30 */
    uint32_t half_open_max_requests; /* probes admitted; default 3 */
    double success_threshold;        /* probe success ratio to close; 0.8 */
} cairn_breaker_opts_t;

/* [throttle]: per-stream GCRA rate limit. */
typedef struct cairn_throttle_opts {
    uint32_t stream_rate;  /* events per second; 0 = off (default) */
    uint32_t stream_burst; /* events allowed at once; default 1 when on */
} cairn_throttle_opts_t;

struct cairn_fsm_def;

/* A state machine bound to every stream whose name starts with prefix
 * (see include/cairn/fsm.h).  An appended event whose type is a trigger of
 * the machine is accepted only if the transition is valid from the
 * stream's current state, atomically with the version check; other types
 * pass through.  The definition is borrowed for the log's life. */
typedef struct cairn_log_fsm_binding {
    const char *prefix;
    size_t prefix_len;
    const struct cairn_fsm_def *def;
} cairn_log_fsm_binding_t;

#define CAIRN_LOG_FSM_BINDINGS_MAX 32

typedef struct cairn_log_opts {
    int enhanced_mode;           /* 1 lock-free (default), 0 mutex twin */
    uint32_t buffer_size_mb;     /* ring size; CAIRN_BUFFER_SIZE_MB_* */
    uint32_t max_endpoints;      /* streams; CAIRN_MAX_ENDPOINTS_* */
    uint32_t max_event_bytes;    /* payload cap; CAIRN_MAX_EVENT_BYTES_* */
    uint32_t max_batch_events;   /* CAIRN_MAX_BATCH_EVENTS_* */
    uint32_t append_timeout_ms;  /* CAIRN_APPEND_TIMEOUT_MS_* */
    uint32_t idempotency_window; /* CAIRN_IDEMPOTENCY_WINDOW_* */
    uint64_t first_seq;          /* seq of the first event; default 1 */
    cairn_breaker_opts_t breaker;
    cairn_throttle_opts_t throttle;
    uint32_t idle_evict_secs;    /* streams idle this long may be evicted
                                    when the table is full; default 3600 */
    /* [storage] — durable segments; data_dir NULL keeps the log in
     * memory only (then only CAIRN_DURABILITY_MEMORY is accepted). */
    const char *data_dir;
    uint64_t segment_bytes;      /* roll size; CAIRN_SEGMENT_BYTES_* */
    uint64_t retention_bytes;    /* sealed bytes kept; 0 = no limit */
    uint64_t retention_age_secs; /* sealed segments older go; 0 = keep */
    int compress_sealed;         /* zstd-compress sealed segments */
    int recovery_truncate;       /* damage inside a sealed segment:
                                    0 = refuse to open (default),
                                    1 = truncate the log there */
    uint32_t sync_interval_ms;   /* fdatasync at least this often while
                                    memory/os appends are unsynced;
                                    CAIRN_SYNC_INTERVAL_MS_* */
    /* Out: when open fails, a line saying why (file and offset for
     * corruption).  Optional caller buffer. */
    char *error_detail;
    size_t error_detail_len;
    /* Optional payload guards (include/cairn/guard.h), borrowed: every
     * event of every append passes cairn_guard_check (JSON events as
     * JSON, others as binary, patterns for their type) before anything is
     * stored; a rejection returns its CAIRN_EGUARD_* code, is audited to
     * $audit and stores nothing.  NULL: no content guards. */
    struct cairn_guard *guard;
    /* Optional: register the log's metrics here (appends by result,
     * events and payload bytes appended, fdatasync latency).  Borrowed;
     * must outlive the log. */
    struct cairn_metrics *metrics;
    /* State machines bound by stream prefix (first match wins); copied
     * at open, definitions borrowed.  Recovery replays them too. */
    const cairn_log_fsm_binding_t *fsms;
    unsigned nfsms;              /* at most CAIRN_LOG_FSM_BINDINGS_MAX */
    /* Monotonic clock in ns for breakers and throttles; NULL = the system
     * clock.  Tests inject their own. */
    uint64_t (*clock_ns)(void *ctx);
    void *clock_ctx;
} cairn_log_opts_t;

/* Fill opts with the documented defaults. */
CAIRN_EXPORT void cairn_log_opts_init(cairn_log_opts_t *opts);

/*
 * Open a log.  opts may be NULL for defaults (in memory).  With a data_dir,
 * recovers it first: a torn tail is truncated, damage inside a sealed
 * segment fails with CAIRN_ECORRUPT (opts->error_detail names file and
 * offset) unless recovery_truncate.  Returns 0 and *out,
 * CAIRN_EBAD_OPTION for an out-of-range option, CAIRN_ELOCKED when another
 * process has the directory open, CAIRN_ECORRUPT, -errno, -ENOMEM.
 */
CAIRN_EXPORT int cairn_log_open(const cairn_log_opts_t *opts,
                                cairn_log_t **out);

/* Close and free.  NULL is a no-op.  No other call may be in progress or
 * follow; appends waiting for space are woken with CAIRN_ECLOSED first. */
CAIRN_EXPORT void cairn_log_close(cairn_log_t *log);

/*
 * Append n events to one stream, all or nothing.
 *
 * expected_version is checked and advanced atomically with the append:
 * a version >= 0 must equal the stream's current version;
 * CAIRN_EXPECT_NO_STREAM requires version 0, CAIRN_EXPECT_EXISTS requires
 * version >= 1, CAIRN_EXPECT_ANY accepts anything.  A mismatch returns
 * CAIRN_EVERSION_CONFLICT with res->actual_version set.
 *
 * Idempotency: when events[0].id is non-empty, (stream, id) is remembered
 * for the last idempotency_window appends that carried an id; appending it
 * again returns 0 with res->duplicate = 1 and the original seqs and version,
 * and stores nothing.  The key is the first event's id (a batch is one
 * idempotent unit).
 *
 * Errors: the event-model codes (CAIRN_ESTREAM_*, CAIRN_ETYPE_*,
 * CAIRN_EID_*, CAIRN_EMETA_*, CAIRN_EPAYLOAD_*, CAIRN_EBATCH_*,
 * CAIRN_ETIME_INVALID), CAIRN_EBAD_EXPECTED, CAIRN_EBAD_DURABILITY
 * (an in-memory log accepts only CAIRN_DURABILITY_MEMORY),
 * CAIRN_EVERSION_CONFLICT, CAIRN_EVERSION_OVERFLOW, CAIRN_ETABLE_FULL,
 * CAIRN_ELOG_FULL (no ring space within append_timeout_ms), CAIRN_ECLOSED.
 * On any error nothing was stored.
 *
 * Streams whose names start with '$' are reserved for cairn itself and are
 * refused here (CAIRN_ESTREAM_RESERVED).
 */
CAIRN_EXPORT int cairn_log_append(cairn_log_t *log, const char *stream,
                                  size_t stream_len,
                                  const cairn_event_in_t *events, size_t n,
                                  int64_t expected_version,
                                  cairn_durability_t durability,
                                  cairn_append_result_t *res);

/* Read filter.  Zero-initialise, then set what you need. */
typedef struct cairn_read_filter {
    uint64_t from_seq;     /* first seq wanted (0 or 1: from the oldest) */
    const char *stream;    /* NULL: every stream */
    size_t stream_len;
    int stream_prefix;     /* 1: stream is a prefix, 0: exact name */
    const char *const *types; /* NULL or ntypes type names to keep */
    const size_t *type_lens;
    size_t ntypes;
    int64_t time_from_ns;  /* keep time >= this (0: no bound) */
    int64_t time_to_ns;    /* keep time < this (0: no bound) */
} cairn_read_filter_t;

/*
 * Open a forward iterator over committed events matching filter (copied;
 * the strings it points to are borrowed until cairn_log_iter_close).
 * Returns 0, CAIRN_EEXPIRED when from_seq was released (the first seq still
 * held is reported by cairn_log_first_seq), CAIRN_ETOO_MANY_READERS,
 * CAIRN_EBAD_FILTER, -ENOMEM.
 *
 * An open iterator pins the ring records it has not yet passed: producers
 * cannot reuse that space, so close iterators promptly.
 */
CAIRN_EXPORT int cairn_log_iter_open(cairn_log_t *log,
                                     const cairn_read_filter_t *filter,
                                     cairn_log_iter_t **out);

/*
 * Next matching event: returns 1 and fills *ev, 0 when the iterator has
 * reached the committed tail (call again later to see newer events), or a
 * negative code.  *ev's pointers stay valid until the next call or close.
 */
CAIRN_EXPORT int cairn_log_iter_next(cairn_log_iter_t *it, cairn_event_t *ev);

/* The seq the iterator will examine next. */
CAIRN_EXPORT uint64_t cairn_log_iter_position(const cairn_log_iter_t *it);

/* NULL is a no-op. */
CAIRN_EXPORT void cairn_log_iter_close(cairn_log_iter_t *it);

/*
 * Let the log reuse the ring space of every event with seq <= upto_seq
 * (only committed events are released; the call never waits).  Released
 * events cannot be read any more from an in-memory log.  Returns 0.
 */
CAIRN_EXPORT int cairn_log_release(cairn_log_t *log, uint64_t upto_seq);

/* The seq the next append will get (so last appended = this - 1). */
CAIRN_EXPORT uint64_t cairn_log_next_seq(cairn_log_t *log);
/* The oldest seq still readable. */
CAIRN_EXPORT uint64_t cairn_log_first_seq(cairn_log_t *log);

typedef struct cairn_stream_info {
    uint64_t version;     /* == number of events stored in the stream */
    uint64_t first_seq;   /* seq of version 1 (0 when the stream is empty) */
    uint64_t last_seq;    /* seq of the current version */
} cairn_stream_info_t;

typedef struct cairn_log_health {
    int read_only;          /* 1 once a write or fsync failed */
    int error;              /* its cause, -errno (-EIO, -ENOSPC, ...) */
    uint64_t next_seq;      /* the seq the next append gets */
    uint64_t written_seq;   /* seqs below this are in the page cache */
    uint64_t durable_seq;   /* seqs below this are fdatasync'd */
    uint64_t first_seq;     /* the oldest seq still readable */
    uint32_t segments;      /* segment files */
    uint64_t disk_bytes;    /* their size */
    uint64_t fsyncs;        /* fdatasync calls made */
    uint64_t truncated_bytes; /* torn tail dropped by recovery */
    uint32_t streams;       /* streams in the stream table now */
    uint64_t ring_bytes;    /* ring bytes in use (claimed, not yet freed) */
    uint64_t ring_capacity; /* ring size in bytes */
} cairn_log_health_t;

/* The log's storage state (a snapshot; any thread). */
CAIRN_EXPORT void cairn_log_health(cairn_log_t *log, cairn_log_health_t *h);

/*
 * Wait until every event up to and including seq is written
 * (CAIRN_DURABILITY_OS) or fdatasync'd (CAIRN_DURABILITY_SYNC); returns
 * at once for CAIRN_DURABILITY_MEMORY.  Lets an application pipeline:
 * append several events with CAIRN_DURABILITY_MEMORY, then wait once for
 * the last seq — each is acknowledged when this returns 0.  Returns
 * CAIRN_EREAD_ONLY when storage failed first, CAIRN_EBAD_DURABILITY for
 * os/sync on an in-memory log.  seq must have been appended already.
 */
CAIRN_EXPORT int cairn_log_wait(cairn_log_t *log, uint64_t seq,
                                cairn_durability_t durability);

/* Make every event appended so far durable (one fdatasync); 0, or
 * CAIRN_EREAD_ONLY.  In-memory logs: 0. */
CAIRN_EXPORT int cairn_log_sync(cairn_log_t *log);

typedef struct cairn_verify_report {
    uint64_t segments;  /* segment files checked */
    uint64_t records;   /* records checked */
    uint64_t streams;   /* distinct streams seen */
    uint64_t first_seq; /* the oldest seq on disk */
    uint64_t next_seq;  /* the seq after the newest */
    char problem[1024]; /* the first problem: "<file>: offset <n>: what" */
} cairn_verify_report_t;

/*
 * Check a data directory offline (it must not be open for writing): every
 * segment header and record CRC, seq continuity, complete batches,
 * contiguous per-stream versions.  Returns 0 when clean, CAIRN_ECORRUPT
 * with r->problem naming file and offset, or -errno (r->problem says why).
 */
CAIRN_EXPORT int cairn_log_verify(const char *dir, cairn_verify_report_t *r);

/* The name of state `state` of the machine bound to stream, or NULL when
 * no machine is bound to it.  Static for the log's life. */
CAIRN_EXPORT const char *cairn_log_fsm_state_name(cairn_log_t *log,
                                                  const char *stream,
                                                  size_t stream_len,
                                                  unsigned state);

/* A stream's state.  Returns 0, CAIRN_ENOT_FOUND, or a stream-name code. */
CAIRN_EXPORT int cairn_log_stream_info(cairn_log_t *log, const char *stream,
                                       size_t stream_len,
                                       cairn_stream_info_t *out);

/*
 * Validate a stream name / an event without appending it: the same checks
 * append makes, returning the same codes.  allow_reserved permits '$'.
 */
CAIRN_EXPORT int cairn_log_check_stream(const char *stream, size_t len,
                                        int allow_reserved);
CAIRN_EXPORT int cairn_log_check_event(const cairn_event_in_t *ev,
                                       uint32_t max_event_bytes);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_LOG_H */
