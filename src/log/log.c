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

#include "internal/clock.h"
#include "log/log_internal.h"
#include "log/record.h"

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
    if (o->first_seq < 1)
        return CAIRN_EBAD_OPTION;
    return 0;
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
    uint64_t cap = UINT64_C(1) << 20;
    while (cap < (uint64_t)o.buffer_size_mb << 20)
        cap <<= 1;
    cairn_table_opts_t to = {o.max_endpoints, o.enhanced_mode};
    if ((rc = cairn_table_open(&to, &log->table)) < 0 ||
        (rc = cairn__idem_open(o.idempotency_window, &log->idem)) < 0 ||
        (rc = cairn__ring_init(&log->ring, cap, o.first_seq)) < 0) {
        cairn_table_close(log->table);
        cairn__idem_close(log->idem);
        free(log);
        return rc;
    }
    cairn__mlog_init(log);
    *out = log;
    return 0;
}

void cairn_log_close(cairn_log_t *log)
{
    if (!log)
        return;
    cairn__ring_close(&log->ring);
    cairn__mlog_destroy(log);
    cairn__ring_destroy(&log->ring);
    cairn__idem_close(log->idem);
    cairn_table_close(log->table);
    free(log);
}

/* Wait for the stream's BUSY bit to clear: spin briefly (the holder is
 * inside one fetch-add), then yield so a preempted holder can run. */
static uint64_t wait_not_busy(cairn__stream_t *s)
{
    uint64_t st;
    for (unsigned i = 0;; i++) {
        st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (!(st & CAIRN_STATE_BUSY))
            return st;
        if (i < 128)
            cairn__cpu_relax();
        else
            sched_yield();
    }
}

static void write_batch(cairn__ring_t *r, const cairn__claim_t *c,
                        const char *stream, size_t stream_len,
                        const cairn_event_in_t *events, size_t n,
                        uint64_t first_version, int64_t now)
{
    uint8_t *p = c->ptr;
    uint64_t pos = c->pos;
    cairn__rec_hdr_t *first = (cairn__rec_hdr_t *)p;
    for (size_t i = 0; i < n; i++) {
        uint64_t size = cairn__rec_size(stream_len, &events[i]);
        int64_t t = events[i].time_ns ? events[i].time_ns : now;
        cairn__rec_write(p, size, stream, stream_len, &events[i], c->seq + i,
                         first_version + i, t);
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

int cairn_log_append(cairn_log_t *log, const char *stream, size_t stream_len,
                     const cairn_event_in_t *events, size_t n, int64_t expected,
                     cairn_durability_t durability, cairn_append_result_t *res)
{
    return cairn__log_append_ex(log, stream, stream_len, events, n, expected,
                                durability, res, 0);
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
        durability != CAIRN_DURABILITY_MEMORY)
        return CAIRN_EBAD_DURABILITY; /* no data directory: memory only */
    uint64_t bytes;
    int rc = cairn__batch_check(stream, stream_len,
                                flags & CAIRN__APPEND_ALLOW_RESERVED, events, n,
                                &log->o, log->ring.cap, &bytes);
    if (rc)
        return rc;
    cairn__stream_t *s;
    rc = cairn__table_find(log->table, stream, stream_len, 1, &s);
    if (rc)
        return rc;
    if (!log->o.enhanced_mode)
        return cairn__mlog_append(log, s, stream, stream_len, events, n, bytes,
                                  expected, res);

    const int has_id = events[0].id_len > 0;
    const uint64_t deadline =
        cairn__mono_ns() + (uint64_t)log->o.append_timeout_ms * 1000000u;
    uint64_t st, v;
    for (;;) {
        st = wait_not_busy(s);
        v = st & CAIRN_STATE_VERSION_MASK;
        if (!cairn__expect_ok(expected, v)) {
            /* A retried idempotent append must still see its original
             * result, not a conflict its own first attempt caused. */
            if (has_id && cairn__idem_find(log->idem, stream, stream_len,
                                           events[0].id, events[0].id_len, res))
                return 0;
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
        return 0;
    }
    cairn__claim_t c;
    rc = cairn__ring_claim(&log->ring, bytes, (uint32_t)n, deadline, &c);
    if (rc < 0) {
        atomic_fetch_and_explicit(&s->state, ~CAIRN_STATE_BUSY,
                                  memory_order_release);
        return rc;
    }
    res->first_seq = c.seq;
    res->last_seq = c.seq + n - 1;
    res->version = v + n;
    if (v == 0)
        atomic_store_explicit(&s->first_seq, c.seq, memory_order_relaxed);
    atomic_store_explicit(&s->last_seq, res->last_seq, memory_order_relaxed);
    if (has_id)
        cairn__idem_put(log->idem, stream, stream_len, events[0].id,
                        events[0].id_len, res);
    /* One RMW publishes version v+n and clears BUSY (v + n never carries
     * into bit 40: checked above).  Release: first/last seq and the
     * idempotency entry are visible to the next holder. */
    atomic_fetch_add_explicit(&s->state, (uint64_t)n - CAIRN_STATE_BUSY,
                              memory_order_release);
    write_batch(&log->ring, &c, stream, stream_len, events, n, v + 1,
                cairn__wall_ns());
    return 0;
}

/* ---- reads --------------------------------------------------------------- */

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
    int rc;
    if (log->o.enhanced_mode) {
        uint64_t seq;
        rc = cairn__ring_reader_open(&log->ring, &it->pos, &seq);
        if (rc >= 0) {
            it->slot = rc;
            it->next_seq = seq;
            rc = 0;
        }
    } else {
        rc = cairn__mlog_iter_open(log, it);
    }
    if (rc < 0) {
        free(it);
        return rc;
    }
    if (it->from_seq && it->from_seq < it->next_seq) {
        cairn_log_iter_close(it);
        return CAIRN_EEXPIRED;
    }
    *out = it;
    return 0;
}

int cairn_log_iter_next(cairn_log_iter_t *it, cairn_event_t *ev)
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

uint64_t cairn_log_iter_position(const cairn_log_iter_t *it)
{
    return it->next_seq > it->from_seq ? it->next_seq : it->from_seq;
}

void cairn_log_iter_close(cairn_log_iter_t *it)
{
    if (!it)
        return;
    if (it->log->o.enhanced_mode)
        cairn__ring_reader_close(&it->log->ring, it->slot);
    else
        cairn__mlog_iter_close(it);
    free(it);
}

int cairn_log_release(cairn_log_t *log, uint64_t upto_seq)
{
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
    cairn__stream_t *s;
    rc = cairn__table_find(log->table, stream, stream_len, 0, &s);
    if (rc)
        return rc;
    /* Wait out an in-flight append so version and seqs agree. */
    uint64_t st = wait_not_busy(s);
    out->version = st & CAIRN_STATE_VERSION_MASK;
    if (out->version == 0)
        return CAIRN_ENOT_FOUND;
    out->first_seq = atomic_load_explicit(&s->first_seq, memory_order_relaxed);
    out->last_seq = atomic_load_explicit(&s->last_seq, memory_order_relaxed);
    return 0;
}
