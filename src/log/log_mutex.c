/*
 * log_mutex.c — the boring twin of the lock-free log (enhanced_mode = 0).
 *
 * DESIGN.  One mutex guards the head, the drain point, the reader pins and
 * every stream's version.  An append validates outside the lock, then under
 * it checks the expected version, waits on a condition variable for ring
 * space (bounded by append_timeout_ms), writes its records and advances
 * the head.  It uses the same ring memory and record format as the
 * lock-free log (tags included), so both are read by the same decoder and
 * pass the same conformance suite; only the synchronisation differs.
 */
#include <errno.h>
#include <string.h>

#include "internal/clock.h"
#include "log/log_internal.h"
#include "log/record.h"

void cairn__mlog_init(cairn_log_t *log)
{
    cairn__log_mutex_t *m = &log->m;
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->space, &ca);
    pthread_condattr_destroy(&ca);
    m->head_pos = m->drain_pos = 0;
    m->head_seq = m->drain_seq = log->o.first_seq;
    for (int i = 0; i < CAIRN_RING_READERS_MAX; i++)
        m->readers[i] = CAIRN__READER_FREE;
    m->closed = 0;
}

void cairn__mlog_destroy(cairn_log_t *log)
{
    cairn__log_mutex_t *m = &log->m;
    pthread_mutex_lock(&m->mu);
    m->closed = 1;
    pthread_cond_broadcast(&m->space);
    pthread_mutex_unlock(&m->mu);
    pthread_cond_destroy(&m->space);
    pthread_mutex_destroy(&m->mu);
}

static uint64_t free_pos_locked(const cairn__log_mutex_t *m)
{
    uint64_t f = m->drain_pos;
    for (int i = 0; i < CAIRN_RING_READERS_MAX; i++)
        if (m->readers[i] < f)
            f = m->readers[i];
    return f;
}

int cairn__mlog_append(cairn_log_t *log, cairn__stream_t *s, const char *stream,
                       size_t stream_len, const cairn_event_in_t *events,
                       size_t n, uint64_t bytes, int64_t expected,
                       cairn_append_result_t *res)
{
    cairn__log_mutex_t *m = &log->m;
    cairn__ring_t *r = &log->ring;
    const uint64_t deadline =
        cairn__mono_ns() + (uint64_t)log->o.append_timeout_ms * 1000000u;
    const int has_id = events[0].id_len > 0;
    int rc = 0;

    pthread_mutex_lock(&m->mu);
    if (has_id && cairn__idem_find(log->idem, stream, stream_len, events[0].id,
                                   events[0].id_len, res))
        goto out;
    uint64_t v = atomic_load_explicit(&s->state, memory_order_relaxed) &
                 CAIRN_STATE_VERSION_MASK;
    if (!cairn__expect_ok(expected, v)) {
        res->actual_version = v;
        rc = CAIRN_EVERSION_CONFLICT;
        goto out;
    }
    if (v + n > CAIRN_VERSION_MAX) {
        rc = CAIRN_EVERSION_OVERFLOW;
        goto out;
    }
    /* cond_wait gives up the mutex, so another append may take the space
     * or change this stream's version meanwhile: re-check both after every
     * wait. */
    while (m->head_pos + bytes > free_pos_locked(m) + r->cap) {
        if (log->store)
            cairn__store_kick(log->store);
        if (m->closed) {
            rc = CAIRN_ECLOSED;
            goto out;
        }
        uint64_t now = cairn__mono_ns();
        if (now >= deadline) {
            rc = CAIRN_ELOG_FULL;
            goto out;
        }
        uint64_t until =
            now + 10000000u < deadline ? now + 10000000u : deadline;
        struct timespec ts = {(time_t)(until / 1000000000u),
                              (long)(until % 1000000000u)};
        pthread_cond_timedwait(&m->space, &m->mu, &ts);
        v = atomic_load_explicit(&s->state, memory_order_relaxed) &
            CAIRN_STATE_VERSION_MASK;
        if (!cairn__expect_ok(expected, v)) {
            res->actual_version = v;
            rc = CAIRN_EVERSION_CONFLICT;
            goto out;
        }
        if (v + n > CAIRN_VERSION_MAX) {
            rc = CAIRN_EVERSION_OVERFLOW;
            goto out;
        }
    }
    const uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
    uint64_t fsm_bits;
    rc = cairn__fsm_check(log, stream, stream_len, events, n, st, &fsm_bits);
    if (rc < 0)
        goto out;
    int64_t now = cairn__wall_ns();
    uint64_t pos = m->head_pos;
    uint8_t *p = cairn__ring_at(r, pos);
    cairn__rec_hdr_t *first = (cairn__rec_hdr_t *)p;
    for (size_t i = 0; i < n; i++) {
        uint64_t size = cairn__rec_size(stream_len, &events[i]);
        uint64_t prev =
            i ? m->head_seq + i - 1
              : (v ? atomic_load_explicit(&s->last_seq, memory_order_relaxed)
                   : 0);
        cairn__rec_write(p, size, stream, stream_len, &events[i],
                         m->head_seq + i, v + 1 + i,
                         events[i].time_ns ? events[i].time_ns : now, prev,
                         i + 1 < n);
        if (i > 0)
            atomic_store_explicit(&((cairn__rec_hdr_t *)p)->tag,
                                  cairn__ring_tag(r, pos),
                                  memory_order_relaxed);
        p += size;
        pos += size;
    }
    /* Release, first record last: the storage writer reads records by
     * their tags without this mutex, and must see the batch whole. */
    atomic_store_explicit(&first->tag, cairn__ring_tag(r, m->head_pos),
                          memory_order_release);
    res->first_seq = m->head_seq;
    res->last_seq = m->head_seq + n - 1;
    res->version = v + n;
    m->head_pos = pos;
    m->head_seq += n;
    if (v == 0)
        atomic_store_explicit(&s->first_seq, res->first_seq,
                              memory_order_relaxed);
    atomic_store_explicit(&s->last_seq, res->last_seq, memory_order_relaxed);
    atomic_store_explicit(&s->state,
                          (st & ~(CAIRN_STATE_VERSION_MASK |
                                  CAIRN_STATE_FSM_MASK)) |
                              fsm_bits | (v + n),
                          memory_order_relaxed);
    if (has_id)
        cairn__idem_put(log->idem, stream, stream_len, events[0].id,
                        events[0].id_len, res);
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int cairn__mlog_iter_open(cairn_log_t *log, cairn_log_iter_t *it, uint64_t *seq)
{
    cairn__log_mutex_t *m = &log->m;
    int rc = CAIRN_ETOO_MANY_READERS;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < CAIRN_RING_READERS_MAX; i++) {
        if (m->readers[i] == CAIRN__READER_FREE) {
            m->readers[i] = m->drain_pos;
            it->slot = i;
            it->pos = m->drain_pos;
            *seq = m->drain_seq;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int cairn__mlog_iter_next(cairn_log_iter_t *it, cairn_event_t *ev)
{
    cairn__log_mutex_t *m = &it->log->m;
    cairn__ring_t *r = &it->log->ring;
    int found = 0;
    pthread_mutex_lock(&m->mu);
    m->readers[it->slot] = it->pos;
    while (it->pos < m->head_pos) {
        const uint8_t *p = cairn__ring_at(r, it->pos);
        cairn__rec_decode(p, ev);
        it->pos += ((const cairn__rec_hdr_t *)p)->rec_len;
        it->next_seq = ev->seq + 1;
        if (ev->seq >= it->from_seq && cairn__filter_match(&it->f, ev)) {
            found = 1;
            break;
        }
        m->readers[it->slot] = it->pos;
    }
    pthread_mutex_unlock(&m->mu);
    return found;
}

void cairn__mlog_iter_close(cairn_log_iter_t *it)
{
    cairn__log_mutex_t *m = &it->log->m;
    pthread_mutex_lock(&m->mu);
    m->readers[it->slot] = CAIRN__READER_FREE;
    pthread_cond_broadcast(&m->space);
    pthread_mutex_unlock(&m->mu);
}

void cairn__mlog_release_to(cairn_log_t *log, uint64_t pos, uint64_t seq)
{
    cairn__log_mutex_t *m = &log->m;
    pthread_mutex_lock(&m->mu);
    m->drain_pos = pos;
    m->drain_seq = seq;
    pthread_cond_broadcast(&m->space);
    pthread_mutex_unlock(&m->mu);
}

void cairn__mlog_release(cairn_log_t *log, uint64_t upto)
{
    cairn__log_mutex_t *m = &log->m;
    cairn__ring_t *r = &log->ring;
    pthread_mutex_lock(&m->mu);
    while (m->drain_pos < m->head_pos && m->drain_seq <= upto) {
        const cairn__rec_hdr_t *h =
            (const cairn__rec_hdr_t *)cairn__ring_at(r, m->drain_pos);
        m->drain_pos += h->rec_len;
        m->drain_seq = h->seq + 1;
    }
    pthread_cond_broadcast(&m->space);
    pthread_mutex_unlock(&m->mu);
}

uint64_t cairn__mlog_next_seq(cairn_log_t *log)
{
    pthread_mutex_lock(&log->m.mu);
    uint64_t s = log->m.head_seq;
    pthread_mutex_unlock(&log->m.mu);
    return s;
}

uint64_t cairn__mlog_first_seq(cairn_log_t *log)
{
    pthread_mutex_lock(&log->m.mu);
    uint64_t s = log->m.drain_seq;
    pthread_mutex_unlock(&log->m.mu);
    return s;
}
