/*
 * log.c — the log's public API and its lock-free implementation; the mutex
 * twin is log_mutex.c.
 *
 * DESIGN (append, enhanced mode)
 *
 *   1. validate the batch (event.c) and size it;
 *   2. find or insert the stream in the table (lock-free);
 *   3. take the stream: CAS its state word from (version v, BUSY clear) to
 *      (v, BUSY set), having checked expected_version against v — the CAS
 *      is what makes the check atomic with the append;
 *   4. claim ring space and seqs with one fetch-add (ring.c);
 *   5. publish the stream's new version and clear BUSY with one fetch-add
 *      of (n - BUSY), which leaves every other state bit alone;
 *   6. copy the records into the claimed space and commit their tags.
 *
 * BUSY is held only across step 4.  It is what keeps a stream's versions
 * in seq order: two appends to one stream cannot claim in one order and
 * number their versions in the other.  Appends to different streams never
 * wait for each other, and the copy in step 6 happens after BUSY is
 * released, so a producer preempted while copying holds up nobody's claim
 * (readers just stop at its uncommitted record until it finishes).
 *
 * Idempotent appends (events[0].id set) look the id up and remember their
 * result while holding BUSY, so two appends of one (stream, id) cannot both
 * miss.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/fsm.h"
#include "cairn/guard.h"
#include "cairn/metrics.h"
#include "internal/clock.h"
#include "internal/guard_state.h"
#include "log/log_internal.h"
#include "log/record.h"

static int register_metrics(cairn_log_t *log, cairn_metrics_t *m);

/* One guard result workspace per thread (guards keep their scratch in
 * it), freed when the thread exits. */
static pthread_key_t guard_key;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void guard_ws_free(void *p)
{
    cairn_guard_result_free(p);
    free(p);
}

static void guard_key_make(void)
{
    pthread_key_create(&guard_key, guard_ws_free);
}

static cairn_guard_result_t *guard_ws(void)
{
    pthread_once(&guard_once, guard_key_make);
    cairn_guard_result_t *r = pthread_getspecific(guard_key);
    if (!r) {
        r = malloc(sizeof *r);
        if (!r)
            return NULL;
        cairn_guard_result_init(r);
        pthread_setspecific(guard_key, r);
    }
    return r;
}

/* The payload guards on every event of a batch (opts.guard). */
static int guard_batch(cairn_log_t *log, const char *stream, size_t stream_len,
                       const cairn_event_in_t *events, size_t n)
{
    cairn_guard_result_t *ws = guard_ws();
    if (!ws)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!events[i].payload_len)
            continue;
        int rc = cairn_guard_check(
            log->guard_checks, events[i].type, events[i].type_len,
            events[i].payload, events[i].payload_len, CAIRN_GUARD_ENC_IDENTITY,
            (events[i].flags & CAIRN_EVENT_JSON) ? CAIRN_GUARD_CONTENT_JSON
                                                 : CAIRN_GUARD_CONTENT_BINARY,
            ws);
        if (rc < 0) {
            cairn__audit_guard_rejected(log, stream, stream_len, rc);
            return rc;
        }
    }
    return 0;
}

void cairn_log_opts_init(cairn_log_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->enhanced_mode = 1;
    o->buffer_size_mb = CAIRN_BUFFER_SIZE_MB_DEFAULT;
    o->max_endpoints = CAIRN_MAX_ENDPOINTS_DEFAULT;
    o->max_event_bytes = CAIRN_MAX_EVENT_BYTES_DEFAULT;
    o->max_batch_events = CAIRN_MAX_BATCH_EVENTS_DEFAULT;
    o->append_timeout_ms = CAIRN_APPEND_TIMEOUT_MS_DEFAULT;
    o->idempotency_window = CAIRN_IDEMPOTENCY_WINDOW_DEFAULT;
    o->first_seq = 1;
    o->breaker.failure_threshold = 5;
    o->breaker.failure_window_secs = 60;
    o->breaker.recovery_timeout_secs = 30;
    o->breaker.half_open_max_requests = 3;
    o->breaker.success_threshold = 0.8;
    o->throttle.stream_rate = 0;
    o->throttle.stream_burst = 1;
    o->idle_evict_secs = 3600;
    o->segment_bytes = CAIRN_SEGMENT_BYTES_DEFAULT;
    o->sync_interval_ms = CAIRN_SYNC_INTERVAL_MS_DEFAULT;
}

static int check_opts(const cairn_log_opts_t *o)
{
    if (o->buffer_size_mb < 1 || o->buffer_size_mb > CAIRN_BUFFER_SIZE_MB_CAP)
        return CAIRN_EBAD_OPTION;
    if (o->max_endpoints < 1 || o->max_endpoints > CAIRN_MAX_ENDPOINTS_CAP)
        return CAIRN_EBAD_OPTION;
    if (o->max_event_bytes > CAIRN_MAX_EVENT_BYTES_CAP)
        return CAIRN_EBAD_OPTION;
    if (o->max_batch_events < 1 ||
        o->max_batch_events > CAIRN_MAX_BATCH_EVENTS_CAP)
        return CAIRN_EBAD_OPTION;
    if (o->append_timeout_ms > CAIRN_APPEND_TIMEOUT_MS_CAP)
        return CAIRN_EBAD_OPTION;
    if (o->idempotency_window < 1 ||
        o->idempotency_window > CAIRN_IDEMPOTENCY_WINDOW_CAP)
        return CAIRN_EBAD_OPTION;
    if (o->first_seq < 1 || o->nfsms > CAIRN_LOG_FSM_BINDINGS_MAX ||
        (o->nfsms && !o->fsms))
        return CAIRN_EBAD_OPTION;
    for (unsigned i = 0; i < o->nfsms; i++)
        if (!o->fsms[i].def || !o->fsms[i].prefix)
            return CAIRN_EBAD_OPTION;
    if (o->data_dir) {
        if (!o->data_dir[0] || o->segment_bytes < CAIRN_SEGMENT_BYTES_MIN ||
            o->segment_bytes > CAIRN_SEGMENT_BYTES_CAP ||
            o->sync_interval_ms < 1 ||
            o->sync_interval_ms > CAIRN_SYNC_INTERVAL_MS_CAP)
            return CAIRN_EBAD_OPTION;
    }
    return 0;
}

static const cairn_log_fsm_binding_t *fsm_for(const cairn_log_t *log,
                                              const char *stream, size_t len)
{
    for (unsigned i = 0; i < log->nfsms; i++) {
        const cairn_log_fsm_binding_t *b = &log->fsms[i];
        if (len >= b->prefix_len &&
            memcmp(stream, b->prefix, b->prefix_len) == 0)
            return b;
    }
    return NULL;
}

int cairn__fsm_check(const cairn_log_t *log, const char *stream,
                     size_t stream_len, const cairn_event_in_t *events,
                     size_t n, uint64_t state, uint64_t *fsm_bits)
{
    *fsm_bits = state & CAIRN_STATE_FSM_MASK;
    if (!log->nfsms)
        return 0;
    const cairn_log_fsm_binding_t *b = fsm_for(log, stream, stream_len);
    if (!b)
        return 0;
    uint32_t cur = (uint32_t)(*fsm_bits >> CAIRN_STATE_FSM_SHIFT);
    for (size_t i = 0; i < n; i++) {
        uint32_t next;
        int rc = cairn_fsm_def_next(b->def, cur, events[i].type,
                                    events[i].type_len, &next);
        if (rc < 0)
            return rc; /* a trigger, but not from this state */
        if (rc == 0)
            cur = next;
    }
    *fsm_bits = (uint64_t)cur << CAIRN_STATE_FSM_SHIFT;
    return 0;
}

const char *cairn_log_fsm_state_name(cairn_log_t *log, const char *stream,
                                     size_t stream_len, unsigned state)
{
    const cairn_log_fsm_binding_t *b = fsm_for(log, stream, stream_len);
    return b ? cairn_fsm_def_state_name(b->def, state) : NULL;
}

/* Recovery: rebuild each stream's version and seqs, and the idempotency
 * window, from the records on disk (called in seq order). */
static int recover_event(void *ctx, const cairn_event_t *ev)
{
    cairn_log_t *log = ctx;
    cairn__stream_t *s;
    int rc = cairn__table_find(log->table, ev->stream, ev->stream_len, 1, &s);
    if (rc < 0)
        return rc;
    uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
    uint64_t v = st & CAIRN_STATE_VERSION_MASK;
    /* Versions are contiguous per stream; the first one seen may be above
     * 1 when retention removed the stream's older events. */
    if (v != 0 && ev->version != v + 1)
        return CAIRN_ECORRUPT;
    /* The bound machine follows the recorded events; one that no longer
     * accepts them (its definition changed) keeps its state. */
    uint64_t fsm = st & CAIRN_STATE_FSM_MASK;
    cairn_event_in_t in = {.type = ev->type, .type_len = ev->type_len};
    uint64_t nf;
    if (cairn__fsm_check(log, ev->stream, ev->stream_len, &in, 1, st, &nf) == 0)
        fsm = nf;
    atomic_store_explicit(
        &s->state,
        (st & ~(CAIRN_STATE_VERSION_MASK | CAIRN_STATE_FSM_MASK)) | fsm |
            ev->version,
        memory_order_relaxed);
    if (v == 0)
        atomic_store_explicit(&s->first_seq, ev->seq, memory_order_relaxed);
    atomic_store_explicit(&s->last_seq, ev->seq, memory_order_relaxed);
    if (ev->id_len) {
        cairn_append_result_t r = {ev->seq, ev->seq, ev->version, 1, 0, 0, 0};
        cairn__idem_put(log->idem, ev->stream, ev->stream_len, ev->id,
                        ev->id_len, &r);
    }
    return 0;
}

static void release_lockfree(void *ctx, uint64_t pos, uint64_t seq)
{
    cairn_log_t *log = ctx;
    cairn__ring_release_to(&log->ring, pos, seq);
}

static void release_mutex(void *ctx, uint64_t pos, uint64_t seq)
{
    cairn__mlog_release_to(ctx, pos, seq);
}

/* The store failed: wake producers blocked on ring space. */
static void store_failed(void *ctx)
{
    cairn_log_t *log = ctx;
    cairn__ring_close(&log->ring);
    pthread_mutex_lock(&log->m.mu);
    log->m.closed = 1;
    pthread_cond_broadcast(&log->m.space);
    pthread_mutex_unlock(&log->m.mu);
}

int cairn_log_open(const cairn_log_opts_t *opts, cairn_log_t **out)
{
    cairn_log_opts_t o;
    if (opts)
        o = *opts;
    else
        cairn_log_opts_init(&o);
    int rc = check_opts(&o);
    if (rc)
        return rc;
    cairn_log_t *log = calloc(1, sizeof *log);
    if (!log)
        return -ENOMEM;
    log->o = o;
    log->guard_checks = o.guard;
    for (unsigned i = 0; i < o.nfsms; i++)
        log->fsms[i] = o.fsms[i];
    log->nfsms = o.nfsms;
    log->o.fsms = NULL;
    uint64_t cap = UINT64_C(1) << 20;
    while (cap < (uint64_t)o.buffer_size_mb << 20)
        cap <<= 1;
    cairn_table_opts_t to = {o.max_endpoints, o.enhanced_mode};
    uint64_t next_seq = o.first_seq;
    if ((rc = cairn_table_open(&to, &log->table)) < 0 ||
        (rc = cairn__idem_open(o.idempotency_window, &log->idem)) < 0 ||
        (rc = cairn__guard_open(log, &log->guard)) < 0)
        goto fail;
    if (o.data_dir &&
        (rc = cairn__store_open(&o, recover_event, log, &next_seq, &log->store,
                                o.error_detail, o.error_detail_len)) < 0)
        goto fail;
    /* The ring starts where the recovered log ends. */
    log->o.first_seq = next_seq;
    if ((rc = cairn__ring_init(&log->ring, cap, next_seq)) < 0)
        goto fail;
    cairn__mlog_init(log);
    if (log->store && (rc = cairn__store_start(
                           log->store, &log->ring, 0, next_seq,
                           o.enhanced_mode ? release_lockfree : release_mutex,
                           store_failed, log)) < 0) {
        cairn__store_close(log->store);
        log->store = NULL;
        cairn__mlog_destroy(log);
        cairn__ring_destroy(&log->ring);
        goto fail;
    }
    cairn__guard_start(log->guard);
    if (o.metrics && (rc = register_metrics(log, o.metrics)) < 0) {
        cairn_log_close(log);
        return rc;
    }
    *out = log;
    return 0;
fail:
    cairn__store_close(log->store);
    cairn__guard_close(log->guard);
    cairn_table_close(log->table);
    cairn__idem_close(log->idem);
    free(log);
    return rc;
}

void cairn_log_close(cairn_log_t *log)
{
    if (!log)
        return;
    /* The writer drains and syncs everything committed before it stops. */
    cairn__store_close(log->store);
    cairn__ring_close(&log->ring);
    cairn__mlog_destroy(log);
    cairn__ring_destroy(&log->ring);
    cairn__idem_close(log->idem);
    cairn__guard_close(log->guard);
    cairn_table_close(log->table);
    free(log);
}

static void write_batch(cairn__ring_t *r, const cairn__claim_t *c,
                        const char *stream, size_t stream_len,
                        const cairn_event_in_t *events, size_t n,
                        uint64_t first_version, uint64_t prev_seq, int64_t now)
{
    uint8_t *p = c->ptr;
    uint64_t pos = c->pos;
    cairn__rec_hdr_t *first = (cairn__rec_hdr_t *)p;
    for (size_t i = 0; i < n; i++) {
        uint64_t size = cairn__rec_size(stream_len, &events[i]);
        int64_t t = events[i].time_ns ? events[i].time_ns : now;
        cairn__rec_write(p, size, stream, stream_len, &events[i], c->seq + i,
                         first_version + i, t, i ? c->seq + i - 1 : prev_seq,
                         i + 1 < n);
        /* Records after the first are published by the first record's
         * release below, so relaxed stores suffice for their tags. */
        if (i > 0)
            atomic_store_explicit(&((cairn__rec_hdr_t *)p)->tag,
                                  cairn__ring_tag(r, pos),
                                  memory_order_relaxed);
        p += size;
        pos += size;
    }
    /* Release: the whole batch's headers and bodies happen-before any
     * reader's acquire of this tag. */
    atomic_store_explicit(&first->tag, cairn__ring_tag(r, c->pos),
                          memory_order_release);
}

/* After the ring: wait for the durability asked for.  A ring closed
 * under us because storage failed reads as CAIRN_EREAD_ONLY. */
static int finish_append(cairn_log_t *log, int rc, cairn_durability_t d,
                         const char *stream, size_t stream_len,
                         cairn_append_result_t *res)
{
    if (rc == CAIRN_ECLOSED && log->store && cairn__store_failed(log->store))
        return CAIRN_EREAD_ONLY;
    if (rc == 0 && !res->duplicate) {
        /* Acquire pairs with the release in add_commit_hook. */
        unsigned nh = atomic_load_explicit(&log->nhooks, memory_order_acquire);
        for (unsigned i = 0; i < nh; i++)
            log->hooks[i].fn(log->hooks[i].ctx, stream, stream_len, res);
    }
    if (rc < 0 || !log->store || d == CAIRN_DURABILITY_MEMORY)
        return rc;
    return cairn__store_wait(log->store, res->last_seq, d);
}

/* Metric label of an append's result; index into log->m_results. */
static const char *const result_names[10] = {
    "ok",           "conflict",  "full",       "throttled", "breaker_open",
    "fsm_rejected", "read_only", "table_full", "invalid",   "other"};

static unsigned result_index(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case CAIRN_EVERSION_CONFLICT:
        return 1;
    case CAIRN_ELOG_FULL:
        return 2;
    case CAIRN_ETHROTTLED:
        return 3;
    case CAIRN_EBREAKER_OPEN:
        return 4;
    case CAIRN_EFSM_INVALID_TRANSITION:
        return 5;
    case CAIRN_EREAD_ONLY:
        return 6;
    case CAIRN_ETABLE_FULL:
        return 7;
    default:
        return rc <= -1000 && rc > -1100 ? 8 : 9;
    }
}

static int register_metrics(cairn_log_t *log, cairn_metrics_t *m)
{
    static const char *const label[] = {"result"};
    cairn_metrics_desc_t d = {CAIRN_METRICS_COUNTER,
                              "cairn_log_appends_total",
                              "Append calls by result",
                              label,
                              1,
                              NULL,
                              0};
    cairn_metrics_family_t *fam;
    int rc = cairn_metrics_register(m, &d, &fam);
    for (unsigned i = 0; rc == 0 && i < 10; i++) {
        const char *v[] = {result_names[i]};
        rc = cairn_metrics_counter_child(fam, v, &log->m_results[i]);
    }
    if (rc == 0)
        rc = cairn_metrics_counter(m, "cairn_log_events_appended_total",
                                   "Events appended", &log->m_events);
    if (rc == 0)
        rc = cairn_metrics_counter(m, "cairn_log_payload_bytes_total",
                                   "Payload bytes appended", &log->m_bytes);
    if (rc == 0 && log->store) {
        static const double b[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                   0.0025,  0.005,  0.01,    0.025,  0.05,
                                   0.1,     0.25,   1.0};
        cairn_metrics_histogram_t *h;
        rc = cairn_metrics_histogram(m, "cairn_log_fsync_duration_seconds",
                                     "fdatasync latency of the log writer", b,
                                     sizeof b / sizeof *b, &h);
        if (rc == 0)
            cairn__store_set_fsync_histogram(log->store, h);
    }
    return rc;
}

int cairn_log_append(cairn_log_t *log, const char *stream, size_t stream_len,
                     const cairn_event_in_t *events, size_t n, int64_t expected,
                     cairn_durability_t durability, cairn_append_result_t *res)
{
    int rc = cairn__log_append_ex(log, stream, stream_len, events, n, expected,
                                  durability, res, 0);
    if (log->m_events) {
        cairn_metrics_counter_inc(log->m_results[result_index(rc)]);
        if (rc == 0 && !res->duplicate) {
            uint64_t bytes = 0;
            for (size_t i = 0; i < n; i++)
                bytes += events[i].payload_len;
            cairn_metrics_counter_add(log->m_events, n);
            cairn_metrics_counter_add(log->m_bytes, bytes);
        }
    }
    return rc;
}

int cairn__log_append_ex(cairn_log_t *log, const char *stream,
                         size_t stream_len, const cairn_event_in_t *events,
                         size_t n, int64_t expected,
                         cairn_durability_t durability,
                         cairn_append_result_t *res, unsigned flags)
{
    memset(res, 0, sizeof *res);
    if (expected < CAIRN_EXPECT_EXISTS)
        return CAIRN_EBAD_EXPECTED;
    if ((unsigned)durability > CAIRN_DURABILITY_SYNC ||
        (!log->store && durability != CAIRN_DURABILITY_MEMORY))
        return CAIRN_EBAD_DURABILITY; /* no data directory: memory only */
    if (log->store && cairn__store_failed(log->store))
        return CAIRN_EREAD_ONLY;
    uint64_t bytes;
    int rc = cairn__batch_check(stream, stream_len,
                                flags & CAIRN__APPEND_ALLOW_RESERVED, events, n,
                                &log->o, log->ring.cap, &bytes);
    if (rc)
        return rc;
    if (log->guard_checks && !(flags & CAIRN__APPEND_ALLOW_RESERVED) &&
        (rc = guard_batch(log, stream, stream_len, events, n)) < 0)
        return rc;
    /* The slot stays this stream's until the section ends (eviction waits
     * for it); admission runs before the stream is taken, and outside the
     * twin's mutex, since it may append to $audit. */
    CAIRN__TABLE_SECTION(log->table);
    cairn__stream_t *s;
    rc = cairn__table_find(log->table, stream, stream_len, 1, &s);
    if (rc)
        return rc;
    rc = cairn__guard_admit(log->guard, s, stream, stream_len, n, res);
    if (rc)
        return rc;
    if (!log->o.enhanced_mode) {
        rc = cairn__mlog_append(log, s, stream, stream_len, events, n, bytes,
                                expected, res);
        return finish_append(log, rc, durability, stream, stream_len, res);
    }

    const int has_id = events[0].id_len > 0;
    const uint64_t deadline =
        cairn__mono_ns() + (uint64_t)log->o.append_timeout_ms * 1000000u;
    uint64_t st, v;
    for (;;) {
        st = cairn__stream_settled(s);
        v = st & CAIRN_STATE_VERSION_MASK;
        if (!cairn__expect_ok(expected, v)) {
            /* A retried idempotent append must still see its original
             * result, not a conflict its own first attempt caused. */
            if (has_id && cairn__idem_find(log->idem, stream, stream_len,
                                           events[0].id, events[0].id_len, res))
                return finish_append(log, 0, durability, stream, stream_len,
                                     res);
            res->actual_version = v;
            return CAIRN_EVERSION_CONFLICT;
        }
        if (v + n > CAIRN_VERSION_MAX)
            return CAIRN_EVERSION_OVERFLOW;
        /* Acquire: we read first_seq/last_seq the previous holder wrote. */
        if (atomic_compare_exchange_weak_explicit(
                &s->state, &st, st | CAIRN_STATE_BUSY, memory_order_acquire,
                memory_order_relaxed))
            break;
    }
    if (has_id && cairn__idem_find(log->idem, stream, stream_len, events[0].id,
                                   events[0].id_len, res)) {
        atomic_fetch_and_explicit(&s->state, ~CAIRN_STATE_BUSY,
                                  memory_order_release);
        return finish_append(log, 0, durability, stream, stream_len, res);
    }
    /* A bound state machine judges the batch while we own the stream, so
     * its verdict and the version check are one atomic decision. */
    uint64_t fsm_bits;
    rc = cairn__fsm_check(log, stream, stream_len, events, n, st, &fsm_bits);
    if (rc < 0) {
        atomic_fetch_and_explicit(&s->state, ~CAIRN_STATE_BUSY,
                                  memory_order_release);
        return rc;
    }
    cairn__claim_t c;
    rc = cairn__ring_claim(&log->ring, bytes, (uint32_t)n, deadline, &c);
    if (rc < 0) {
        atomic_fetch_and_explicit(&s->state, ~CAIRN_STATE_BUSY,
                                  memory_order_release);
        return finish_append(log, rc, durability, stream, stream_len, res);
    }
    res->first_seq = c.seq;
    res->last_seq = c.seq + n - 1;
    res->version = v + n;
    const uint64_t prev_seq =
        v ? atomic_load_explicit(&s->last_seq, memory_order_relaxed) : 0;
    if (v == 0)
        atomic_store_explicit(&s->first_seq, c.seq, memory_order_relaxed);
    atomic_store_explicit(&s->last_seq, res->last_seq, memory_order_relaxed);
    if (has_id)
        cairn__idem_put(log->idem, stream, stream_len, events[0].id,
                        events[0].id_len, res);
    /* One RMW publishes version v+n, clears BUSY and moves the FSM field
     * (v + n never carries into bit 40: checked above; the FSM delta is
     * modular and lands the field exactly on its new value, since only
     * the BUSY holder changes it).  Release: first/last seq and the
     * idempotency entry are visible to the next holder. */
    atomic_fetch_add_explicit(&s->state,
                              (uint64_t)n - CAIRN_STATE_BUSY + fsm_bits -
                                  (st & CAIRN_STATE_FSM_MASK),
                              memory_order_release);
    write_batch(&log->ring, &c, stream, stream_len, events, n, v + 1, prev_seq,
                cairn__wall_ns());
    return finish_append(log, 0, durability, stream, stream_len, res);
}

/* ---- reads ---------------------------------------------------------------
 *
 * An iterator reads the ring while what it wants is still there, and the
 * segments (durable logs) otherwise.  It moves from segments to the ring
 * by pinning a ring reader at the drain point D: if D is at or before the
 * next seq it wants, every later record is pinned in the ring and it
 * switches; if not, the records in between were released, which happens
 * only after they are written, so it reads them from the segments first.
 */

static int ring_pin(cairn_log_iter_t *it, uint64_t *seq)
{
    cairn_log_t *log = it->log;
    int rc;
    if (log->o.enhanced_mode) {
        rc = cairn__ring_reader_open(&log->ring, &it->pos, seq);
        if (rc >= 0) {
            it->slot = rc;
            rc = 0;
        }
    } else {
        rc = cairn__mlog_iter_open(log, it, seq);
    }
    return rc;
}

static void ring_unpin(cairn_log_iter_t *it)
{
    if (it->slot < 0)
        return;
    if (it->log->o.enhanced_mode)
        cairn__ring_reader_close(&it->log->ring, it->slot);
    else
        cairn__mlog_iter_close(it);
    it->slot = -1;
}

static int ring_next(cairn_log_iter_t *it, cairn_event_t *ev)
{
    cairn_log_t *log = it->log;
    if (!log->o.enhanced_mode)
        return cairn__mlog_iter_next(it, ev);
    cairn__ring_t *r = &log->ring;
    /* The record returned last time is no longer needed: move the pin to
     * the next unread one. */
    cairn__ring_reader_move(r, it->slot, it->pos);
    for (;;) {
        cairn__rec_hdr_t *h = (cairn__rec_hdr_t *)cairn__ring_at(r, it->pos);
        /* Acquire pairs with the producer's release of the batch's first
         * tag (or, for later records, with it transitively). */
        if (atomic_load_explicit(&h->tag, memory_order_acquire) !=
            cairn__ring_tag(r, it->pos))
            return 0;
        cairn__rec_decode((const uint8_t *)h, ev);
        it->pos += h->rec_len;
        it->next_seq = ev->seq + 1;
        if (ev->seq >= it->from_seq && cairn__filter_match(&it->f, ev))
            return 1;
        /* Skipped records need no pin. */
        cairn__ring_reader_move(r, it->slot, it->pos);
    }
}

int cairn_log_iter_open(cairn_log_t *log, const cairn_read_filter_t *filter,
                        cairn_log_iter_t **out)
{
    cairn_read_filter_t none;
    if (!filter) {
        memset(&none, 0, sizeof none);
        filter = &none;
    }
    if ((filter->stream && filter->stream_len == 0) ||
        (filter->ntypes && (!filter->types || !filter->type_lens)))
        return CAIRN_EBAD_FILTER;
    cairn_log_iter_t *it = calloc(1, sizeof *it);
    if (!it)
        return -ENOMEM;
    it->log = log;
    it->f = *filter;
    it->from_seq = filter->from_seq;
    it->slot = -1;
    uint64_t seq = 0;
    int rc = 0;
    if (!log->store || filter->from_seq) {
        /* Try the ring first: it holds the newest events. */
        rc = ring_pin(it, &seq);
        if (rc == 0 && !log->store && it->from_seq && it->from_seq < seq)
            rc = CAIRN_EEXPIRED;
        if (rc == 0 && log->store && (!it->from_seq || it->from_seq < seq))
            ring_unpin(it); /* what we want has left the ring */
        else if (rc == 0)
            it->next_seq = seq > it->from_seq ? seq : it->from_seq;
    }
    if (rc == 0 && log->store && it->slot < 0) {
        rc = cairn__store_cursor_open(log->store, it->from_seq,
                                      it->from_seq ? 0 : filter->time_from_ns,
                                      &it->sc);
        if (rc == 0)
            it->next_seq = cairn__store_cursor_seq(it->sc);
    }
    if (rc < 0) {
        ring_unpin(it);
        free(it);
        return rc;
    }
    *out = it;
    return 0;
}

int cairn_log_iter_next(cairn_log_iter_t *it, cairn_event_t *ev)
{
    for (int tries = 0; it->sc; tries++) {
        int rc = cairn__store_cursor_next(it->sc, ev);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            it->next_seq = ev->seq + 1;
            if (ev->seq >= it->from_seq && cairn__filter_match(&it->f, ev))
                return 1;
            tries = 0;
            continue;
        }
        /* At the written end of the segments: try the ring. */
        uint64_t seq;
        rc = ring_pin(it, &seq);
        if (rc < 0)
            return rc;
        if (seq <= it->next_seq) {
            cairn__store_cursor_close(it->sc);
            it->sc = NULL;
            if (it->from_seq < it->next_seq)
                it->from_seq = it->next_seq;
            break;
        }
        ring_unpin(it); /* newer records were written meanwhile */
        if (tries >= 2)
            return 0;
    }
    return ring_next(it, ev);
}

uint64_t cairn_log_iter_position(const cairn_log_iter_t *it)
{
    return it->next_seq > it->from_seq ? it->next_seq : it->from_seq;
}

void cairn_log_iter_close(cairn_log_iter_t *it)
{
    if (!it)
        return;
    ring_unpin(it);
    cairn__store_cursor_close(it->sc);
    free(it);
}

int cairn_log_release(cairn_log_t *log, uint64_t upto_seq)
{
    if (log->store)
        return 0; /* the storage writer releases what it has written */
    if (log->o.enhanced_mode)
        cairn__ring_release(&log->ring, upto_seq);
    else
        cairn__mlog_release(log, upto_seq);
    return 0;
}

uint64_t cairn_log_next_seq(cairn_log_t *log)
{
    if (!log->o.enhanced_mode)
        return cairn__mlog_next_seq(log);
    uint64_t pos, seq;
    cairn__ring_head(&log->ring, &pos, &seq);
    return seq;
}

uint64_t cairn_log_first_seq(cairn_log_t *log)
{
    if (log->store)
        return cairn__store_first_seq(log->store);
    if (!log->o.enhanced_mode)
        return cairn__mlog_first_seq(log);
    return atomic_load_explicit(&log->ring.drain_seq, memory_order_acquire);
}

int cairn_log_stream_info(cairn_log_t *log, const char *stream,
                          size_t stream_len, cairn_stream_info_t *out)
{
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
    if (out->version == 0)
        return CAIRN_ENOT_FOUND;
    out->first_seq = atomic_load_explicit(&s->first_seq, memory_order_relaxed);
    out->last_seq = atomic_load_explicit(&s->last_seq, memory_order_relaxed);
    return 0;
}

void cairn_log_health(cairn_log_t *log, cairn_log_health_t *h)
{
    memset(h, 0, sizeof *h);
    h->next_seq = cairn_log_next_seq(log);
    if (log->store) {
        cairn__store_health(log->store, h);
    } else {
        h->written_seq = h->durable_seq = 0;
        h->first_seq = cairn_log_first_seq(log);
    }
    h->streams = cairn_table_count(log->table);
    h->ring_capacity = log->ring.cap;
    if (log->o.enhanced_mode) {
        uint64_t pos, seq;
        cairn__ring_head(&log->ring, &pos, &seq);
        uint64_t freed =
            atomic_load_explicit(&log->ring.free_pos, memory_order_acquire);
        h->ring_bytes = pos > freed ? pos - freed : 0;
    } else {
        pthread_mutex_lock(&log->m.mu);
        h->ring_bytes = log->m.head_pos - log->m.drain_pos;
        pthread_mutex_unlock(&log->m.mu);
    }
}

int cairn__log_add_commit_hook(cairn_log_t *log, cairn__commit_fn fn, void *ctx)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    unsigned n = atomic_load_explicit(&log->nhooks, memory_order_relaxed);
    int rc = -ENOSPC;
    if (n < CAIRN__COMMIT_HOOKS_MAX) {
        log->hooks[n] = (cairn__commit_hook_t){fn, ctx};
        /* Release: the entry is complete before appenders can see it. */
        atomic_store_explicit(&log->nhooks, n + 1, memory_order_release);
        rc = 0;
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

int cairn_log_wait(cairn_log_t *log, uint64_t seq, cairn_durability_t d)
{
    if ((unsigned)d > CAIRN_DURABILITY_SYNC)
        return CAIRN_EBAD_DURABILITY;
    if (d == CAIRN_DURABILITY_MEMORY)
        return 0;
    if (!log->store)
        return CAIRN_EBAD_DURABILITY;
    return cairn__store_wait(log->store, seq, d);
}

int cairn_log_sync(cairn_log_t *log)
{
    if (!log->store)
        return 0;
    uint64_t next = cairn_log_next_seq(log);
    return cairn__store_sync(log->store, next > 1 ? next - 1 : 0);
}
