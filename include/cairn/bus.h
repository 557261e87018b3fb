/*
 * bus.h — fan-out of committed events: synchronous handlers that run on
 * commit, and asynchronous subscribers, each with its own cursor and
 * filter, that catch up from the past and cross into live delivery with no
 * gap and no duplicate.  docs/BUS.md explains the design.
 *
 * One bus per log, for the log's whole life: the bus installs a commit
 * hook the log cannot remove, so create it after cairn_log_open and close
 * it after the last append has returned and before cairn_log_close.
 *
 * Delivery order is seq order, for handlers and subscribers alike; a
 * subscriber sees every event that matches its filter from its start
 * point exactly once, unless retention removed events before it read them,
 * which it is told explicitly (CAIRN_ESUBSCRIBER_LAGGED and a
 * cairn_bus_lag_t), never silently.
 *
 * Thread safety: every function may be called from any thread, except
 * that one subscriber is used by one thread at a time (cairn_bus_next,
 * cairn_bus_position, cairn_bus_unsubscribe), and cairn_bus_close must be
 * the last call.
 */
#ifndef CAIRN_BUS_H
#define CAIRN_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "cairn/limits.h"
#include "cairn/log.h"
#include "cairn/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_bus cairn_bus_t;
typedef struct cairn_bus_sub cairn_bus_sub_t;

typedef struct cairn_bus_opts {
    uint32_t max_subscribers; /* CAIRN_BUS_SUBSCRIBERS_* */
    uint32_t park_ms;         /* CAIRN_BUS_PARK_MS_* */
    uint32_t repin_events;    /* CAIRN_BUS_REPIN_EVENTS_* */
    /* Optional registry (borrowed; must outlive the bus): the bus
     * registers cairn_bus_subscriber_lag{subscriber=NAME} (events appended
     * after the subscriber's cursor), cairn_bus_delivered_total{subscriber}
     * and cairn_bus_missed_total{subscriber}. */
    cairn_metrics_t *metrics;
} cairn_bus_opts_t;

/* Fill opts with the documented defaults (no metrics). */
CAIRN_EXPORT void cairn_bus_opts_init(cairn_bus_opts_t *opts);

/*
 * Create the bus of log (borrowed; it must outlive the bus) and start its
 * keeper thread.  opts may be NULL for defaults.  Returns 0 and *out,
 * CAIRN_EBAD_OPTION, CAIRN_EBUS_EXISTS (the log already has a bus, even a
 * closed one: the hook is permanent), -ENOSPC (the log has no free commit
 * hook), -ENOMEM, -errno from pthread_create.
 */
CAIRN_EXPORT int cairn_bus_create(cairn_log_t *log, const cairn_bus_opts_t *opts,
                                  cairn_bus_t **out);

/*
 * Wake every subscriber blocked in cairn_bus_next and make it, and every
 * later call, return CAIRN_ECLOSED (graceful server shutdown).  Handlers
 * keep running.  Idempotent; any thread.
 */
CAIRN_EXPORT void cairn_bus_shutdown(cairn_bus_t *bus);

/*
 * Stop the keeper, destroy the projections still attached
 * (include/cairn/projection.h), free every subscriber not yet
 * unsubscribed, and free the bus.  NULL is a no-op.  No append may be in
 * progress or follow, and no other call on the bus or its subscribers.
 */
CAIRN_EXPORT void cairn_bus_close(cairn_bus_t *bus);

/* ---- synchronous handlers ------------------------------------------------ */

/*
 * Called once per committed event matching the handler's filter, in seq
 * order, on an appending thread (the one whose commit completed the
 * contiguous tail, or one that found another dispatching and left the
 * work to it), or on the bus keeper thread when appends stopped while work
 * was pending (within CAIRN_BUS_KEEPER_INTERVAL_MS).  So a handler may run
 * after the append that committed its event has returned.
 *
 * MUST NOT BLOCK and must not append to the log: it runs inside an append
 * and delays it, and with the ring full an append from a handler would
 * wait for itself.  ev and everything it points to are valid for the call
 * only.  Handlers never run concurrently with each other.
 */
typedef void (*cairn_bus_handler_fn)(void *ctx, const cairn_event_t *ev);

/*
 * Add a handler for events with seq >= the log's next seq now.  filter may
 * be NULL (every event); its stream and type strings are copied; from_seq
 * and the time range are ignored.  Returns 0 and *id (for
 * cairn_bus_remove_handler), CAIRN_EBUS_FULL (CAIRN_BUS_HANDLERS_MAX),
 * CAIRN_EBAD_FILTER, CAIRN_ETOO_MANY_READERS (the dispatcher needs a ring
 * reader slot and none is free), -ENOMEM.  Blocks while a dispatch runs.
 */
CAIRN_EXPORT int cairn_bus_add_handler(cairn_bus_t *bus,
                                       const cairn_read_filter_t *filter,
                                       cairn_bus_handler_fn fn, void *ctx,
                                       int *id);

/* Remove a handler: when this returns it is not running and never runs
 * again.  Returns 0 or CAIRN_ENOT_FOUND.  Blocks while a dispatch runs;
 * must not be called from a handler. */
CAIRN_EXPORT int cairn_bus_remove_handler(cairn_bus_t *bus, int id);

/*
 * Dispatch every event committed so far to the handlers before
 * returning (waits for a dispatch in progress).  Returns the seq after the
 * last event dispatched (events below it have been handled).  Tests and
 * read-your-writes callers use it; must not be called from a handler.
 */
CAIRN_EXPORT uint64_t cairn_bus_flush(cairn_bus_t *bus);

/* ---- asynchronous subscribers -------------------------------------------- */

/* Where a subscription starts and what it keeps.  Zero-initialise, then
 * set what you need.  Strings are copied by cairn_bus_subscribe. */
typedef struct cairn_bus_sub_opts {
    /* Label for metrics and stats ("sse-17"); NULL = "sub-<n>".  Metric
     * series are never removed, so reuse names rather than minting one
     * per connection. */
    const char *name;
    const char *stream;  /* NULL: every stream */
    size_t stream_len;
    int stream_prefix;   /* 1: stream is a prefix */
    const char *const *types; /* NULL or ntypes type names to keep */
    const size_t *type_lens;
    size_t ntypes;
    /* Start: from_seq >= 1 delivers from that seq (an SSE Last-Event-ID
     * L resumes with L + 1); from_seq 0 and from_time_ns > 0 delivers from
     * the first event stamped at or after from_time_ns (and everything
     * after it, whatever its time); both 0 delivers only events appended
     * after the call (live). */
    uint64_t from_seq;
    int64_t from_time_ns;
} cairn_bus_sub_opts_t;

/*
 * Subscribe.  Returns 0 and *out (free with cairn_bus_unsubscribe),
 * CAIRN_EBUS_FULL (max_subscribers), CAIRN_EBAD_FILTER, CAIRN_ECLOSED
 * after cairn_bus_shutdown, -ENOMEM.  Nothing is read yet: a start that
 * retention already removed is reported by the first cairn_bus_next.
 */
CAIRN_EXPORT int cairn_bus_subscribe(cairn_bus_t *bus,
                                     const cairn_bus_sub_opts_t *opts,
                                     cairn_bus_sub_t **out);

/* What a lagged subscriber missed (CAIRN_ESUBSCRIBER_LAGGED). */
typedef struct cairn_bus_lag {
    uint64_t expected_seq; /* the seq it was going to read next */
    uint64_t first_seq;    /* the oldest seq still available; the next
                              cairn_bus_next continues from here */
    uint64_t missed;       /* first_seq - expected_seq: events of every
                              stream, since removed events cannot be
                              filtered any more */
} cairn_bus_lag_t;

/*
 * The next event for sub, waiting up to timeout_ns (0: do not wait;
 * negative: wait without limit).
 *
 * Returns
 *   1                         *ev filled; it and everything it points to
 *                             are copied into sub's buffer and stay valid
 *                             until the next call on sub or unsubscribe
 *   CAIRN_ETIMEOUT            nothing new within timeout_ns
 *   CAIRN_ESUBSCRIBER_LAGGED  retention removed events before sub read
 *                             them: *lag (which may be NULL) says which;
 *                             delivery continues from lag->first_seq
 *   CAIRN_ECLOSED             cairn_bus_shutdown was called
 *   CAIRN_ECORRUPT, -errno    reading the segments failed (the call may be
 *                             repeated; the cursor did not move)
 *
 * Memory: sub's buffer grows to the largest event delivered (bounded by
 * the log's max_event_bytes plus its names).  One thread per sub.
 */
CAIRN_EXPORT int cairn_bus_next(cairn_bus_sub_t *sub, cairn_event_t *ev,
                                int64_t timeout_ns, cairn_bus_lag_t *lag);

/* The seq sub examines next (its cursor: every matching event below it
 * was delivered or reported missed). */
CAIRN_EXPORT uint64_t cairn_bus_position(const cairn_bus_sub_t *sub);

/* Remove and free sub.  NULL is a no-op.  Not while another thread is in
 * cairn_bus_next on it. */
CAIRN_EXPORT void cairn_bus_unsubscribe(cairn_bus_sub_t *sub);

typedef struct cairn_bus_sub_stats {
    uint64_t position;   /* cairn_bus_position */
    uint64_t lag;        /* events appended at or after the cursor */
    uint64_t delivered;  /* events returned */
    uint64_t missed;     /* events reported missed, in total */
    uint64_t lag_notices;/* CAIRN_ESUBSCRIBER_LAGGED returns */
    uint64_t reopens;    /* iterator reopens (repin or keeper unpin) */
    uint64_t sleeps;     /* times it slept caught up */
    uint64_t buffer_bytes; /* its event buffer now */
} cairn_bus_sub_stats_t;

/* A snapshot of sub's counters; any thread (fields are read relaxed). */
CAIRN_EXPORT void cairn_bus_sub_stats(const cairn_bus_sub_t *sub,
                                      cairn_bus_sub_stats_t *out);

typedef struct cairn_bus_stats {
    uint32_t subscribers;   /* now */
    uint32_t handlers;      /* now */
    uint64_t dispatched;    /* events dispatched to handlers (each once) */
    uint64_t dispatch_seq;  /* events below this seq have been dispatched */
    uint64_t wakeups;       /* futex wakes of sleeping subscribers */
    uint64_t unpins;        /* parked subscribers unpinned by the keeper */
    uint64_t keeper_dispatches; /* dispatches the keeper had to run */
} cairn_bus_stats_t;

CAIRN_EXPORT void cairn_bus_stats(cairn_bus_t *bus, cairn_bus_stats_t *out);

/* The log the bus serves (borrowed). */
CAIRN_EXPORT cairn_log_t *cairn_bus_log(const cairn_bus_t *bus);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_BUS_H */
