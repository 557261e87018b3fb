/*
 * projection.c — projections: the per-stream state cache, derive by
 * replay, commit-time folds, time travel (include/cairn/projection.h;
 * docs/PROJECTION.md).
 *
 * DESIGN
 *
 * Cache.  A preallocated pool of `capacity` entries and an open-addressed
 * index of 2 x capacity slots (a power of two, linear probing) holding
 * entry numbers + 1 (0 = empty).  An entry holds its stream name, state,
 * and the (seq, version, time) of the last event folded, all as _Atomic
 * 64-bit words behind the entry's seqlock (include/cairn/seqlock.h).
 * Readers take no lock: hash the name (a seeded 128-bit-multiply mix),
 * walk the slots, and for each entry read name and state under its
 * seqlock, accepting only a consistent copy whose name matches.  Writers
 * (derives inserting, the bus dispatcher folding, evictions) serialise on
 * `wmu` and write entries under the seqlock, so a reader never returns a
 * torn state nor a state of another stream even while the entry it reads
 * is being reused.  Deletion shifts later slots of the probe run back
 * (no tombstones); a reader racing with that may miss an entry, which only
 * costs a derive.  Entries are never freed before the projection, so a
 * reader never touches freed memory.  Replacement is CLOCK (an LRU
 * approximation): a hit sets the entry's reference byte (only if clear, so
 * hot entries do not bounce a cache line), the allocating writer's hand
 * clears set bytes and evicts the first clear one.
 *
 * Commit-time updates.  The projection is a bus handler: for each
 * committed event, in seq order, it publishes the event's seq in
 * `disp_seen`, then looks the stream up; if it is cached and the event's
 * back-link prev_seq equals the entry's seq, it folds the event into the
 * entry (under wmu and the seqlock); if the event is already included
 * (seq <= entry seq) it does nothing; otherwise (a gap, a fold error, or
 * invalidate_on_commit) it drops the entry.
 *
 * Derive vs. commit race.  A derive folds the stream through an iterator
 * up to the committed tail, position P (every event below P examined).
 * Events at or after P may be dispatched before the derive caches its
 * result, and would then never reach the new entry.  So the derive, under
 * wmu, publishes the entry (seq_cst store of the slot) and then reads
 * `disp_seen` (seq_cst); the handler stores `disp_seen` (seq_cst) before
 * it looks the slot up (seq_cst).  In the single total order either the
 * handler sees the entry (and folds the event after the derive releases
 * wmu) or the derive sees disp_seen >= P: it then removes the entry,
 * folds on from P and tries again (CAIRN_PROJECTION_DERIVE_RETRIES times,
 * then returns the state uncached).  No lock is held while reading the
 * log.
 *
 * Replay.  A derive reads only the stream's events (an exact stream
 * filter, from the newest usable snapshot, else from the stream's first
 * seq) and checks each event's prev_seq back-link against the previous
 * event folded: a snapshot that disagrees with the log (say, the log lost
 * a tail the snapshot covered) is dropped and the replay restarts from the
 * stream's beginning.  Snapshots are written by derives whenever they fold
 * past a multiple of snapshot_every (snapshot.c).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bus/bus_internal.h"
#include "cairn/seqlock.h"
#include "log/log_internal.h"
#include "projection/projection_internal.h"

#define KEY_WORDS 32 /* 256 bytes >= CAIRN_STREAM_MAX */
#define HIT_SHARDS 64 /* threads that own a counter shard; later ones share */

typedef struct entry {
    cairn_seqlock_t sl;
    /* protected by sl */
    _Atomic uint64_t hash;
    _Atomic uint64_t lens; /* key_len | state_len << 16 */
    _Atomic uint64_t seq, version, time;
    /* not protected: CLOCK reference byte, writer-only fields */
    _Atomic uint8_t ref;
    uint8_t live;
    uint32_t slot;
    /* protected by sl: state_words of state, then KEY_WORDS of name (the
     * state first, so a small state shares the header's cache line) */
    _Atomic uint64_t words[];
} entry_t;

typedef struct shard {
    _Alignas(64) _Atomic uint64_t hits;
    _Atomic uint64_t misses;
} shard_t;

struct cairn_projection {
    cairn__bus_attached_t att;
    cairn_bus_t *bus;
    cairn_log_t *log;
    cairn_projection_def_t def;
    char name[CAIRN_PROJECTION_NAME_MAX + 1];
    cairn_projection_opts_t o;
    cairn__live_fn live;
    size_t state_max, state_words;
    int handler_id;

    /* cache */
    uint8_t *pool;
    size_t stride;
    uint32_t cap;
    uint64_t mask;
    _Atomic uint32_t *slots;
    uint64_t seed;

    pthread_mutex_t wmu; /* writers; the fields below */
    uint32_t *free_stack;
    uint32_t nfree, next_unused, hand, nlive;
    uint64_t *scratch;

    _Alignas(64) _Atomic uint64_t disp_seen;

    shard_t shards[HIT_SHARDS + 1]; /* [HIT_SHARDS]: the shared one */
    _Atomic uint64_t derives, replayed, folded, invalidated, evictions,
        snaps_written, snaps_used, snaps_dropped;

    cairn__snapstore_t *snaps;

    cairn_metrics_counter_t *m_hits, *m_misses;
    cairn_metrics_gauge_t *m_cached;
};

/* ---- keys and hashing ---------------------------------------------------- */

static inline entry_t *entry_at(const cairn_projection_t *p, uint32_t i)
{
    return (entry_t *)(p->pool + (size_t)i * p->stride);
}

static inline _Atomic uint64_t *ekey(const cairn_projection_t *p, entry_t *e)
{
    return e->words + p->state_words;
}

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* Pack name into words (key_word below); returns the word count. */
static inline uint64_t key_word(const char *s, size_t len, size_t i);

static inline size_t pack_key(uint64_t *kw, const char *s, size_t len)
{
    size_t n = (len + 7) / 8;
    for (size_t i = 0; i < n; i++)
        kw[i] = key_word(s, len, i);
    return n;
}

/* Word i of name s (len bytes) as pack_key would store it, read straight
 * from the string (no copy into a buffer on the read path). */
static inline uint64_t key_word(const char *s, size_t len, size_t i)
{
    uint64_t w = 0;
    if (8 * i + 8 <= len) {
        memcpy(&w, s + 8 * i, 8);
        return w;
    }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (len >= 8) {
        /* The tail as the top bytes of the string's last 8, shifted down:
         * no byte loop, no read outside the string. */
        memcpy(&w, s + len - 8, 8);
        return w >> (8 * (8 - (len - 8 * i)));
    }
#endif
    for (size_t k = len - 8 * i; k-- > 0;)
        w = (w << 8) | (uint8_t)s[8 * i + k];
    return w;
}

/* 16 bytes per 64x64->128 multiply (a wyhash-style mix), seeded per
 * projection; not cryptographic, but the seed is secret and a probe run
 * is bounded by the cache's capacity. */
static inline uint64_t hash_key(uint64_t seed, const char *s, size_t len)
{
    size_t n = (len + 7) / 8, i = 0;
    uint64_t h = seed ^ (len * UINT64_C(0x9E3779B97F4A7C15));
    for (; i + 1 < n; i += 2)
        h = mix(key_word(s, len, i) ^ UINT64_C(0xA0761D6478BD642F),
                key_word(s, len, i + 1) ^ h ^ UINT64_C(0xE7037ED1A0B428DB));
    if (i < n)
        h = mix(key_word(s, len, i) ^ UINT64_C(0xA0761D6478BD642F),
                h ^ UINT64_C(0xE7037ED1A0B428DB));
    return h ^ (h >> 29);
}

/* The calling thread's counter shard: the first HIT_SHARDS threads of
 * the process own one each (only they write it, so a relaxed load and
 * store count exactly, with no locked instruction on the read path);
 * later threads share the last one with atomic adds. */
static unsigned my_shard(void)
{
    static _Atomic unsigned next_shard;
    static _Thread_local unsigned shard = UINT32_MAX;
    if (shard == UINT32_MAX) {
        shard = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed);
        if (shard > HIT_SHARDS)
            shard = HIT_SHARDS;
    }
    return shard;
}

static inline void shard_add(_Atomic uint64_t *c, unsigned shard)
{
    if (shard < HIT_SHARDS)
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void count_hit(cairn_projection_t *p)
{
    if (p->m_hits) {
        cairn_metrics_counter_inc(p->m_hits);
    } else {
        unsigned k = my_shard();
        shard_add(&p->shards[k].hits, k);
    }
}

static void count_miss(cairn_projection_t *p)
{
    if (p->m_misses) {
        cairn_metrics_counter_inc(p->m_misses);
    } else {
        unsigned k = my_shard();
        shard_add(&p->shards[k].misses, k);
    }
}

/* ---- lock-free reads ----------------------------------------------------- */

/* Copy n bytes of atomic words into dst (any alignment). */
static inline void load_words(void *dst, const _Atomic uint64_t *w, size_t n)
{
    uint8_t *d = dst;
    size_t full = n / 8;
    for (size_t i = 0; i < full; i++) {
        uint64_t v = atomic_load_explicit(&w[i], memory_order_relaxed);
        memcpy(d + 8 * i, &v, 8);
    }
    if (n % 8) {
        uint64_t v = atomic_load_explicit(&w[full], memory_order_relaxed);
        memcpy(d + 8 * full, &v, n % 8);
    }
}

static inline void store_words(_Atomic uint64_t *w, const void *src, size_t n)
{
    const uint8_t *s = src;
    size_t full = n / 8;
    for (size_t i = 0; i < full; i++) {
        uint64_t v;
        memcpy(&v, s + 8 * i, 8);
        atomic_store_explicit(&w[i], v, memory_order_relaxed);
    }
    if (n % 8) {
        uint64_t v = 0;
        memcpy(&v, s + 8 * full, n % 8);
        atomic_store_explicit(&w[full], v, memory_order_relaxed);
    }
}

/*
 * Find key in the cache and copy its state (state may be NULL: only
 * check presence).  0, CAIRN_ENOT_FOUND, -ENOBUFS.  order is the load
 * order of the slots: acquire for readers, seq_cst for the dispatcher's
 * half of the derive handshake.
 */
static inline int cache_lookup(cairn_projection_t *p, const char *key,
                               size_t nkw, size_t klen, uint64_t h, void *state, size_t cap,
                        cairn_projection_info_t *info, memory_order order)
{
    uint64_t i = h & p->mask;
    for (uint64_t n = 0; n <= p->mask; n++, i = (i + 1) & p->mask) {
        uint32_t v = atomic_load_explicit(&p->slots[i], order);
        if (v == 0)
            return CAIRN_ENOT_FOUND;
        entry_t *e = entry_at(p, v - 1);
        for (;;) {
            uint64_t s = cairn_seqlock_read_begin(&e->sl);
            if (atomic_load_explicit(&e->hash, memory_order_relaxed) != h)
                break;
            uint64_t lens = atomic_load_explicit(&e->lens, memory_order_relaxed);
            if ((lens & 0xffff) != klen)
                break;
            size_t k = 0;
            while (k < nkw &&
                   atomic_load_explicit(&ekey(p, e)[k], memory_order_relaxed) ==
                       key_word(key, klen, k))
                k++;
            if (k < nkw)
                break;
            size_t slen = (size_t)(lens >> 16);
            int rc = 0;
            if (state) {
                if (slen > cap)
                    rc = -ENOBUFS;
                else
                    load_words(state, e->words, slen);
            }
            uint64_t seq = atomic_load_explicit(&e->seq, memory_order_relaxed);
            uint64_t ver = atomic_load_explicit(&e->version, memory_order_relaxed);
            uint64_t t = atomic_load_explicit(&e->time, memory_order_relaxed);
            if (cairn_seqlock_read_retry(&e->sl, s))
                continue;
            if (info) {
                info->state_len = slen;
                info->seq = seq;
                info->version = ver;
                info->time_ns = (int64_t)t;
                info->cached = 1;
                info->from_snapshot = 0;
                info->replayed = 0;
            }
            /* Relaxed: a hint for CLOCK; written only when clear so a hot
             * entry's line is not written on every hit. */
            if (!atomic_load_explicit(&e->ref, memory_order_relaxed))
                atomic_store_explicit(&e->ref, 1, memory_order_relaxed);
            return rc;
        }
    }
    return CAIRN_ENOT_FOUND;
}

int cairn_projection_read_cached(cairn_projection_t *p, const char *stream,
                                 size_t stream_len, void *state, size_t cap,
                                 cairn_projection_info_t *info)
{
    if (!stream || stream_len == 0 || stream_len > CAIRN_STREAM_MAX)
        return CAIRN_ENOT_FOUND;
    uint64_t h = hash_key(p->seed, stream, stream_len);
    int rc = cache_lookup(p, stream, (stream_len + 7) / 8, stream_len, h, state,
                          cap, info, memory_order_acquire);
    if (rc == 0)
        count_hit(p);
    return rc;
}

/* ---- writers (wmu held) -------------------------------------------------- */

static entry_t *w_find(cairn_projection_t *p, const uint64_t *kw, size_t nkw,
                       size_t klen, uint64_t h)
{
    uint64_t i = h & p->mask;
    for (uint64_t n = 0; n <= p->mask; n++, i = (i + 1) & p->mask) {
        uint32_t v = atomic_load_explicit(&p->slots[i], memory_order_relaxed);
        if (v == 0)
            return NULL;
        entry_t *e = entry_at(p, v - 1);
        /* Relaxed: only writers (holding wmu) change these words. */
        if (atomic_load_explicit(&e->hash, memory_order_relaxed) != h ||
            (atomic_load_explicit(&e->lens, memory_order_relaxed) & 0xffff) !=
                klen)
            continue;
        size_t k = 0;
        while (k < nkw &&
               atomic_load_explicit(&ekey(p, e)[k], memory_order_relaxed) == kw[k])
            k++;
        if (k == nkw)
            return e;
    }
    return NULL;
}

static uint32_t entry_index(const cairn_projection_t *p, const entry_t *e)
{
    return (uint32_t)(((const uint8_t *)e - p->pool) / p->stride);
}

static uint64_t home(const cairn_projection_t *p, const entry_t *e)
{
    return atomic_load_explicit(&e->hash, memory_order_relaxed) & p->mask;
}

/* Remove e from the index (backward-shift deletion) and free it. */
static void w_remove(cairn_projection_t *p, entry_t *e)
{
    uint64_t i = e->slot, j = i;
    for (;;) {
        j = (j + 1) & p->mask;
        uint32_t v = atomic_load_explicit(&p->slots[j], memory_order_relaxed);
        if (v == 0)
            break;
        entry_t *x = entry_at(p, v - 1);
        uint64_t k = home(p, x);
        /* x may stay at j if its home lies cyclically in (i, j]. */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        /* Release: a reader that loads the slot sees a complete entry. */
        atomic_store_explicit(&p->slots[i], v, memory_order_release);
        x->slot = (uint32_t)i;
        i = j;
    }
    atomic_store_explicit(&p->slots[i], 0, memory_order_release);
    /* Make the entry unmatchable for readers still holding its number. */
    uint64_t t = cairn_seqlock_write_begin(&e->sl);
    atomic_store_explicit(&e->hash, 0, memory_order_relaxed);
    atomic_store_explicit(&e->lens, 0, memory_order_relaxed);
    cairn_seqlock_write_end(&e->sl, t);
    e->live = 0;
    p->free_stack[p->nfree++] = entry_index(p, e);
    p->nlive--;
    if (p->m_cached)
        cairn_metrics_gauge_set(p->m_cached, p->nlive);
}

/* A free entry: a freed one, a never-used one, or the CLOCK victim. */
static entry_t *w_alloc(cairn_projection_t *p)
{
    if (p->nfree)
        return entry_at(p, p->free_stack[--p->nfree]);
    if (p->next_unused < p->cap)
        return entry_at(p, p->next_unused++);
    for (;;) {
        entry_t *e = entry_at(p, p->hand);
        p->hand = (p->hand + 1) % p->cap;
        if (atomic_load_explicit(&e->ref, memory_order_relaxed)) {
            atomic_store_explicit(&e->ref, 0, memory_order_relaxed);
            continue;
        }
        w_remove(p, e);
        atomic_fetch_add_explicit(&p->evictions, 1, memory_order_relaxed);
        return entry_at(p, p->free_stack[--p->nfree]);
    }
}

static void w_write(cairn_projection_t *p, entry_t *e, uint64_t h, const uint64_t *kw, size_t nkw,
                    size_t klen, const void *state, size_t slen, uint64_t seq,
                    uint64_t version, int64_t time_ns, int key_too)
{
    uint64_t t = cairn_seqlock_write_begin(&e->sl);
    atomic_store_explicit(&e->hash, h, memory_order_relaxed);
    atomic_store_explicit(&e->lens, klen | ((uint64_t)slen << 16),
                          memory_order_relaxed);
    atomic_store_explicit(&e->seq, seq, memory_order_relaxed);
    atomic_store_explicit(&e->version, version, memory_order_relaxed);
    atomic_store_explicit(&e->time, (uint64_t)time_ns, memory_order_relaxed);
    if (key_too)
        for (size_t i = 0; i < nkw; i++)
            atomic_store_explicit(&ekey(p, e)[i], kw[i], memory_order_relaxed);
    store_words(e->words, state, slen);
    cairn_seqlock_write_end(&e->sl, t);
}

/* Insert a new entry for key; returns it.  The slot is stored seq_cst:
 * the derive's half of the handshake with disp_seen (DESIGN). */
static entry_t *w_insert(cairn_projection_t *p, uint64_t h, const uint64_t *kw,
                         size_t nkw, size_t klen, const void *state,
                         size_t slen, uint64_t seq, uint64_t version,
                         int64_t time_ns)
{
    entry_t *e = w_alloc(p);
    w_write(p, e, h, kw, nkw, klen, state, slen, seq, version, time_ns, 1);
    atomic_store_explicit(&e->ref, 1, memory_order_relaxed);
    e->live = 1;
    uint64_t i = h & p->mask;
    while (atomic_load_explicit(&p->slots[i], memory_order_relaxed))
        i = (i + 1) & p->mask;
    e->slot = (uint32_t)i;
    atomic_store_explicit(&p->slots[i], entry_index(p, e) + 1,
                          memory_order_seq_cst);
    p->nlive++;
    if (p->m_cached)
        cairn_metrics_gauge_set(p->m_cached, p->nlive);
    return e;
}

/* ---- commit-time folds (the bus dispatcher) ------------------------------ */

static void on_commit_event(void *ctx, const cairn_event_t *ev)
{
    cairn_projection_t *p = ctx;
    /* seq_cst store, then seq_cst slot loads: the dispatcher's half of
     * the derive handshake (DESIGN). */
    atomic_store_explicit(&p->disp_seen, ev->seq, memory_order_seq_cst);
    uint64_t h = hash_key(p->seed, ev->stream, ev->stream_len);
    if (cache_lookup(p, ev->stream, (ev->stream_len + 7) / 8, ev->stream_len, h,
                     NULL, 0, NULL, memory_order_seq_cst) != 0)
        return;
    uint64_t kw[KEY_WORDS];
    size_t nkw = pack_key(kw, ev->stream, ev->stream_len);
    pthread_mutex_lock(&p->wmu);
    entry_t *e = w_find(p, kw, nkw, ev->stream_len, h);
    if (!e)
        goto out;
    uint64_t eseq = atomic_load_explicit(&e->seq, memory_order_relaxed);
    if (ev->seq <= eseq)
        goto out; /* the derive that cached it already folded it */
    if (ev->prev_seq != eseq || p->def.invalidate_on_commit) {
        w_remove(p, e);
        atomic_fetch_add_explicit(&p->invalidated, 1, memory_order_relaxed);
        goto out;
    }
    size_t slen = (size_t)(atomic_load_explicit(&e->lens, memory_order_relaxed) >>
                           16);
    load_words(p->scratch, e->words, slen);
    if (p->def.fold(p->def.ctx, p->scratch, &slen, p->state_max, ev) != 0 ||
        slen > p->state_max) {
        w_remove(p, e);
        atomic_fetch_add_explicit(&p->invalidated, 1, memory_order_relaxed);
        goto out;
    }
    w_write(p, e, h, kw, nkw, ev->stream_len, p->scratch, slen, ev->seq,
            ev->version, ev->time_ns, 0);
    atomic_fetch_add_explicit(&p->folded, 1, memory_order_relaxed);
out:
    pthread_mutex_unlock(&p->wmu);
}

/* ---- derive -------------------------------------------------------------- */

enum { DERIVE_LATEST, DERIVE_AT_SEQ, DERIVE_AT_TIME };

typedef struct derive {
    cairn_projection_t *p;
    const char *stream;
    size_t len;
    int mode;
    uint64_t at_seq;
    int64_t at_time;
    void *state; /* state_max bytes, 8-aligned */
    size_t slen;
    uint64_t seq, version;
    int64_t time;
    uint64_t replayed;
    int from_snapshot;
} derive_t;

static int state_init(derive_t *d)
{
    cairn_projection_t *p = d->p;
    d->slen = 0;
    d->seq = d->version = 0;
    d->time = 0;
    d->from_snapshot = 0;
    if (p->def.init)
        return p->def.init(p->def.ctx, d->state, &d->slen, p->state_max);
    return 0;
}

/* Fold events from the iterator until the committed tail or the target.
 * 0, 1 when a back-link failed (the starting point is wrong), <0. */
static int fold_from(derive_t *d, cairn_log_iter_t *it)
{
    cairn_projection_t *p = d->p;
    cairn_event_t ev;
    int rc;
    while ((rc = cairn_log_iter_next(it, &ev)) == 1) {
        if (d->mode == DERIVE_AT_SEQ && ev.seq > d->at_seq)
            return 0;
        if (d->mode == DERIVE_AT_TIME && ev.time_ns > d->at_time)
            return 0;
        if (ev.prev_seq != d->seq)
            return 1;
        if ((rc = p->def.fold(p->def.ctx, d->state, &d->slen, p->state_max,
                              &ev)) != 0)
            return rc;
        if (d->slen > p->state_max)
            return CAIRN_EPROJECTION_STATE_TOO_LARGE;
        d->seq = ev.seq;
        d->version = ev.version;
        d->time = ev.time_ns;
        d->replayed++;
        if (p->snaps && p->o.snapshot_every &&
            ev.version % p->o.snapshot_every == 0 &&
            !cairn__snap_has(p->snaps, d->stream, d->len, ev.version) &&
            cairn__snap_put(p->snaps, d->stream, d->len, ev.version, ev.seq,
                            ev.time_ns, d->state, (uint32_t)d->slen) == 0)
            atomic_fetch_add_explicit(&p->snaps_written, 1,
                                      memory_order_relaxed);
    }
    return rc;
}

/* Cache d's result unless events it has not folded were already
 * dispatched (DESIGN).  1 cached, 0 not. */
static int try_cache(derive_t *d, cairn_log_iter_t *it)
{
    cairn_projection_t *p = d->p;
    uint64_t kw[KEY_WORDS];
    size_t nkw = pack_key(kw, d->stream, d->len);
    uint64_t h = hash_key(p->seed, d->stream, d->len);
    int cached = 1;
    pthread_mutex_lock(&p->wmu);
    entry_t *e = w_find(p, kw, nkw, d->len, h);
    if (e)
        w_write(p, e, h, kw, nkw, d->len, d->state, d->slen, d->seq, d->version,
                d->time, 0);
    else
        e = w_insert(p, h, kw, nkw, d->len, d->state, d->slen, d->seq,
                     d->version, d->time);
    /* seq_cst: after the slot store above (DESIGN, derive vs. commit). */
    uint64_t seen = atomic_load_explicit(&p->disp_seen, memory_order_seq_cst);
    if (seen >= cairn_log_iter_position(it)) {
        w_remove(p, e);
        cached = 0;
    }
    pthread_mutex_unlock(&p->wmu);
    return cached;
}

static int derive_run(derive_t *d, int cache_it)
{
    cairn_projection_t *p = d->p;
    cairn_stream_info_t si;
    int rc = cairn_log_stream_info(p->log, d->stream, d->len, &si);
    if (rc)
        return rc;
    atomic_fetch_add_explicit(&p->derives, 1, memory_order_relaxed);
    uint64_t max_seq = d->mode == DERIVE_AT_SEQ && d->at_seq < si.last_seq
                           ? d->at_seq
                           : si.last_seq;
    int64_t max_time = d->mode == DERIVE_AT_TIME ? d->at_time : -1;
    for (int use_snap = p->snaps != NULL;; use_snap = 0) {
        if ((rc = state_init(d)) != 0)
            return rc;
        uint64_t from = si.first_seq;
        cairn__snap_t sn;
        if (use_snap && cairn__snap_best(p->snaps, d->stream, d->len,
                                         si.version, max_seq, max_time,
                                         d->state, p->state_max, &sn) == 1) {
            if (sn.version == si.version && sn.seq != si.last_seq) {
                /* The stream's last event is not the snapshot's. */
                cairn__snap_drop(p->snaps, d->stream, d->len, sn.version);
                atomic_fetch_add_explicit(&p->snaps_dropped, 1,
                                          memory_order_relaxed);
                continue;
            }
            d->slen = sn.state_len;
            d->seq = sn.seq;
            d->version = sn.version;
            d->time = sn.time_ns;
            d->from_snapshot = 1;
            from = sn.seq + 1;
        }
        cairn_read_filter_t f = {.from_seq = from,
                                 .stream = d->stream,
                                 .stream_len = d->len};
        cairn_log_iter_t *it;
        if ((rc = cairn_log_iter_open(p->log, &f, &it)) != 0)
            return rc;
        rc = fold_from(d, it);
        if (rc == 1) {
            cairn_log_iter_close(it);
            if (!d->from_snapshot)
                return CAIRN_ECORRUPT; /* the log's own back-links disagree */
            cairn__snap_drop(p->snaps, d->stream, d->len, d->version);
            atomic_fetch_add_explicit(&p->snaps_dropped, 1,
                                      memory_order_relaxed);
            continue;
        }
        if (rc == 0 && d->from_snapshot)
            atomic_fetch_add_explicit(&p->snaps_used, 1, memory_order_relaxed);
        for (unsigned tries = 0; rc == 0 && cache_it; tries++) {
            if (try_cache(d, it) || tries + 1 >= CAIRN_PROJECTION_DERIVE_RETRIES)
                break;
            rc = fold_from(d, it); /* newer events overtook us: fold on */
            if (rc == 1)
                rc = CAIRN_ECORRUPT;
        }
        cairn_log_iter_close(it);
        atomic_fetch_add_explicit(&p->replayed, d->replayed,
                                  memory_order_relaxed);
        return rc;
    }
}

static void fill_info(const derive_t *d, cairn_projection_info_t *info)
{
    if (!info)
        return;
    info->state_len = d->slen;
    info->seq = d->seq;
    info->version = d->version;
    info->time_ns = d->time;
    info->cached = 0;
    info->from_snapshot = d->from_snapshot;
    info->replayed = d->replayed;
}

static int derive_into(cairn_projection_t *p, derive_t *d, int cache_it,
                       void *state, size_t cap, cairn_projection_info_t *info)
{
    uint64_t small[64]; /* states up to 512 bytes need no allocation */
    d->p = p;
    d->state = p->state_max <= sizeof small ? small : malloc(p->state_max);
    if (!d->state)
        return -ENOMEM;
    int rc = derive_run(d, cache_it);
    if (rc == 0) {
        fill_info(d, info);
        if (d->slen > cap)
            rc = -ENOBUFS;
        else if (d->slen)
            memcpy(state, d->state, d->slen);
    }
    if (d->state != small)
        free(d->state);
    return rc;
}

int cairn_projection_get(cairn_projection_t *p, const char *stream,
                         size_t stream_len, uint64_t min_seq, void *state,
                         size_t cap, cairn_projection_info_t *info)
{
    cairn_projection_info_t tmp;
    if (!info)
        info = &tmp;
    if (p->live)
        return p->live(p->def.ctx, p->log, stream, stream_len, state, cap, info);
    int rc = cairn_projection_read_cached(p, stream, stream_len, state, cap,
                                          info);
    if (rc == -ENOBUFS || (rc == 0 && info->seq >= min_seq))
        return rc;
    count_miss(p);
    derive_t d = {.stream = stream, .len = stream_len, .mode = DERIVE_LATEST};
    return derive_into(p, &d, 1, state, cap, info);
}

int cairn_projection_get_at(cairn_projection_t *p, const char *stream,
                            size_t stream_len, uint64_t at_seq,
                            int64_t at_time_ns, void *state, size_t cap,
                            cairn_projection_info_t *info)
{
    if ((at_seq == 0 && at_time_ns <= 0) || p->live)
        return CAIRN_EBAD_OPTION;
    derive_t d = {.stream = stream,
                  .len = stream_len,
                  .mode = at_seq ? DERIVE_AT_SEQ : DERIVE_AT_TIME,
                  .at_seq = at_seq,
                  .at_time = at_time_ns};
    return derive_into(p, &d, 0, state, cap, info);
}

static int default_json(const void *state, size_t len, char **json,
                        size_t *json_len)
{
    size_t b64 = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(b64 + 32);
    if (!out)
        return -ENOMEM;
    int n = snprintf(out, 32, "{\"state_base64\":\"");
    sodium_bin2base64(out + n, b64, state, len, sodium_base64_VARIANT_ORIGINAL);
    size_t l = (size_t)n + strlen(out + n);
    memcpy(out + l, "\"}", 3);
    *json = out;
    *json_len = l + 2;
    return 0;
}

int cairn_projection_get_json(cairn_projection_t *p, const char *stream,
                              size_t stream_len, uint64_t at_seq,
                              int64_t at_time_ns, char **json,
                              size_t *json_len, cairn_projection_info_t *info)
{
    cairn_projection_info_t tmp;
    if (!info)
        info = &tmp;
    void *state = malloc(p->state_max ? p->state_max : 8);
    if (!state)
        return -ENOMEM;
    int rc = at_seq || at_time_ns > 0
                 ? cairn_projection_get_at(p, stream, stream_len, at_seq,
                                           at_time_ns, state, p->state_max, info)
                 : cairn_projection_get(p, stream, stream_len, 0, state,
                                        p->state_max, info);
    if (rc == 0) {
        if (p->def.to_json)
            rc = p->def.to_json(p->def.ctx, state, info->state_len, json,
                                json_len);
        else
            rc = default_json(state, info->state_len, json, json_len);
    }
    free(state);
    return rc;
}

/* ---- lifecycle ----------------------------------------------------------- */

void cairn_projection_opts_init(cairn_projection_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->cache_capacity = CAIRN_PROJECTION_CACHE_DEFAULT;
    o->snapshot_every = CAIRN_PROJECTION_SNAPSHOT_EVERY_DEFAULT;
    o->snapshot_streams = CAIRN_PROJECTION_SNAPSHOT_STREAMS_DEFAULT;
}

static int name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CAIRN_PROJECTION_NAME_MAX || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static void destroy_obj(void *obj)
{
    cairn_projection_destroy(obj);
}

static int register_metrics(cairn_projection_t *p)
{
    static const char *const labels[] = {"projection"};
    const char *v[] = {p->name};
    cairn_metrics_desc_t d = {.label_names = labels, .label_count = 1};
    cairn_metrics_family_t *f;
    d.type = CAIRN_METRICS_COUNTER;
    d.name = "cairn_projection_hits_total";
    d.help = "Projection reads served from the cache.";
    int rc = cairn_metrics_register(p->o.metrics, &d, &f);
    if (rc == 0)
        rc = cairn_metrics_counter_child(f, v, &p->m_hits);
    d.name = "cairn_projection_misses_total";
    d.help = "Projection reads that derived the state by replay.";
    if (rc == 0)
        rc = cairn_metrics_register(p->o.metrics, &d, &f);
    if (rc == 0)
        rc = cairn_metrics_counter_child(f, v, &p->m_misses);
    d.type = CAIRN_METRICS_GAUGE;
    d.name = "cairn_projection_cached";
    d.help = "Streams in the projection's cache.";
    if (rc == 0)
        rc = cairn_metrics_register(p->o.metrics, &d, &f);
    if (rc == 0)
        rc = cairn_metrics_gauge_child(f, v, &p->m_cached);
    return rc;
}

int cairn__projection_create_ex(cairn_bus_t *bus,
                                const cairn_projection_def_t *def,
                                const cairn_projection_opts_t *opts,
                                cairn__live_fn live, cairn_projection_t **out)
{
    cairn_projection_opts_t o;
    if (opts)
        o = *opts;
    else
        cairn_projection_opts_init(&o);
    uint32_t smax = def->state_max ? def->state_max
                                   : CAIRN_PROJECTION_STATE_MAX_DEFAULT;
    if (!name_ok(def->name) || !def->fold ||
        smax > CAIRN_PROJECTION_STATE_MAX_CAP || o.cache_capacity == 0 ||
        o.cache_capacity > CAIRN_PROJECTION_CACHE_CAP ||
        o.snapshot_every > CAIRN_PROJECTION_SNAPSHOT_EVERY_CAP ||
        o.snapshot_streams > CAIRN_PROJECTION_SNAPSHOT_STREAMS_CAP)
        return CAIRN_EBAD_OPTION;
    if (sodium_init() < 0)
        return -EIO;
    cairn_projection_t *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->bus = bus;
    p->log = cairn_bus_log(bus);
    p->def = *def;
    snprintf(p->name, sizeof p->name, "%s", def->name);
    p->def.name = p->name;
    p->o = o;
    p->o.snapshot_dir = NULL;
    p->live = live;
    p->state_words = (smax + 7) / 8;
    p->state_max = p->state_words * 8;
    p->def.state_max = (uint32_t)p->state_max;
    p->cap = o.cache_capacity;
    p->stride = (sizeof(entry_t) + (p->state_words + KEY_WORDS) * 8 + 63) &
                ~(size_t)63;
    uint64_t nslots = 1;
    while (nslots < 2 * (uint64_t)p->cap)
        nslots <<= 1;
    p->mask = nslots - 1;
    randombytes_buf(&p->seed, sizeof p->seed);
    pthread_mutex_init(&p->wmu, NULL);
    int rc = 0;
    if (posix_memalign((void **)&p->pool, 64, p->stride * p->cap) != 0)
        p->pool = NULL;
    p->slots = calloc(nslots, sizeof *p->slots);
    p->free_stack = calloc(p->cap, sizeof *p->free_stack);
    p->scratch = malloc(p->state_max ? p->state_max : 8);
    if (!p->pool || !p->slots || !p->free_stack || !p->scratch)
        rc = -ENOMEM;
    else
        memset(p->pool, 0, p->stride * p->cap);
    if (rc == 0 && o.metrics)
        rc = register_metrics(p);
    if (rc == 0 && !live && o.snapshot_every) {
        char dir[4096];
        const char *d = NULL;
        if (opts && opts->snapshot_dir) {
            d = opts->snapshot_dir;
        } else if (p->log->o.data_dir && !o.snapshots_in_memory) {
            if (snprintf(dir, sizeof dir, "%s/snapshots", p->log->o.data_dir) >=
                (int)sizeof dir)
                rc = -ENAMETOOLONG;
            d = dir;
        }
        if (o.snapshots_in_memory)
            d = NULL;
        if (rc == 0)
            rc = cairn__snap_open(d, p->name, (uint32_t)p->state_max,
                                  o.snapshot_streams,
                                  cairn_log_next_seq(p->log), &p->snaps);
    }
    p->att.name = p->name;
    p->att.obj = p;
    p->att.destroy = destroy_obj;
    int attached = 0;
    if (rc == 0 && (rc = cairn__bus_attach(bus, &p->att)) == 0)
        attached = 1;
    if (rc == 0 && !live)
        rc = cairn_bus_add_handler(bus, NULL, on_commit_event, p,
                                   &p->handler_id);
    if (rc) {
        if (attached)
            cairn__bus_detach(bus, &p->att);
        p->handler_id = 0;
        cairn_projection_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

int cairn_projection_create(cairn_bus_t *bus, const cairn_projection_def_t *def,
                            const cairn_projection_opts_t *opts,
                            cairn_projection_t **out)
{
    return cairn__projection_create_ex(bus, def, opts, NULL, out);
}

void cairn_projection_destroy(cairn_projection_t *p)
{
    if (!p)
        return;
    if (p->handler_id)
        cairn_bus_remove_handler(p->bus, p->handler_id);
    cairn__bus_detach(p->bus, &p->att);
    cairn__snap_close(p->snaps);
    pthread_mutex_destroy(&p->wmu);
    free(p->pool);
    free((void *)p->slots);
    free(p->free_stack);
    free(p->scratch);
    free(p);
}

int cairn_projection_find(cairn_bus_t *bus, const char *name,
                          cairn_projection_t **out)
{
    cairn_projection_t *p = name ? cairn__bus_find(bus, name) : NULL;
    if (!p)
        return CAIRN_EPROJECTION_UNKNOWN;
    *out = p;
    return 0;
}

const char *cairn_projection_name(const cairn_projection_t *p)
{
    return p->name;
}

size_t cairn_projection_state_max(const cairn_projection_t *p)
{
    return p->state_max;
}

void cairn_projection_stats(cairn_projection_t *p, cairn_projection_stats_t *o)
{
    memset(o, 0, sizeof *o);
    if (p->m_hits) {
        o->hits = cairn_metrics_counter_value(p->m_hits);
        o->misses = cairn_metrics_counter_value(p->m_misses);
    } else {
        for (int i = 0; i <= HIT_SHARDS; i++) {
            o->hits += atomic_load_explicit(&p->shards[i].hits,
                                            memory_order_relaxed);
            o->misses += atomic_load_explicit(&p->shards[i].misses,
                                              memory_order_relaxed);
        }
    }
    o->derives = atomic_load_explicit(&p->derives, memory_order_relaxed);
    o->replayed = atomic_load_explicit(&p->replayed, memory_order_relaxed);
    o->folded = atomic_load_explicit(&p->folded, memory_order_relaxed);
    o->invalidated = atomic_load_explicit(&p->invalidated, memory_order_relaxed);
    o->evictions = atomic_load_explicit(&p->evictions, memory_order_relaxed);
    pthread_mutex_lock(&p->wmu);
    o->cached = p->nlive;
    pthread_mutex_unlock(&p->wmu);
    o->snapshots_written =
        atomic_load_explicit(&p->snaps_written, memory_order_relaxed);
    o->snapshots_used = atomic_load_explicit(&p->snaps_used, memory_order_relaxed);
    o->snapshots_dropped =
        atomic_load_explicit(&p->snaps_dropped, memory_order_relaxed);
}
