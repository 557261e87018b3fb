/*
 * idem.c — the idempotency window: (stream, id) -> the original append's
 * result, for the most recent `window` appends that carried an id.
 *
 * DESIGN.  A pool of `window` fixed-size entries used as a FIFO (the
 * oldest is overwritten next), indexed by a chained hash table whose
 * buckets and links are pool indexes.  One mutex guards it; only appends
 * that carry an id touch it, and they already hold their stream's BUSY
 * bit, so the lookup-then-insert of one (stream, id) cannot interleave
 * with another append of the same pair.  The pool is allocated lazily by
 * the kernel (calloc of a large block maps zero pages), so an unused
 * window costs address space, not memory.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log/idem.h"

#define NIL UINT32_MAX

typedef struct idem_entry {
    uint64_t hash;
    unsigned char stream[16]; /* BLAKE2b-128 of the stream name */
    uint32_t next;            /* chain link (pool index) */
    uint8_t id_len;
    uint8_t used;
    char id[CAIRN_ID_MAX];
    cairn_append_result_t res;
} idem_entry_t;

struct cairn__idem {
    pthread_mutex_t lock;
    idem_entry_t *pool;
    uint32_t window;
    uint32_t oldest; /* next pool index to (re)use */
    uint32_t *buckets;
    uint32_t mask;
    unsigned char key[crypto_shorthash_KEYBYTES];
};

int cairn__idem_open(uint32_t window, cairn__idem_t **out)
{
    cairn__idem_t *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    uint32_t nb = 16;
    while (nb < window)
        nb <<= 1;
    m->pool = calloc(window, sizeof *m->pool);
    m->buckets = malloc(nb * sizeof *m->buckets);
    if (!m->pool || !m->buckets) {
        free(m->pool);
        free(m->buckets);
        free(m);
        return -ENOMEM;
    }
    memset(m->buckets, 0xff, nb * sizeof *m->buckets);
    m->mask = nb - 1;
    m->window = window;
    pthread_mutex_init(&m->lock, NULL);
    crypto_shorthash_keygen(m->key);
    *out = m;
    return 0;
}

void cairn__idem_close(cairn__idem_t *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m->pool);
    free(m->buckets);
    free(m);
}

/* The stream is identified by a keyed 128-bit BLAKE2b digest of its name
 * (a collision between two of at most 2^24 live streams has probability
 * about 2^-80), the bucket by SipHash of (digest, id). */
static uint64_t idem_hash(const cairn__idem_t *m, const char *stream,
                          size_t stream_len, const char *id, size_t id_len,
                          unsigned char digest[16])
{
    unsigned char buf[16 + CAIRN_ID_MAX];
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_generichash(digest, 16, (const unsigned char *)stream, stream_len,
                       m->key, sizeof m->key);
    memcpy(buf, digest, 16);
    memcpy(buf + 16, id, id_len);
    crypto_shorthash(out, buf, 16 + id_len, m->key);
    memcpy(&h, out, sizeof h);
    return h;
}

static idem_entry_t *idem_lookup(cairn__idem_t *m, uint64_t h,
                                 const unsigned char digest[16], const char *id,
                                 size_t id_len)
{
    for (uint32_t i = m->buckets[h & m->mask]; i != NIL; i = m->pool[i].next) {
        idem_entry_t *e = &m->pool[i];
        if (e->hash == h && memcmp(e->stream, digest, 16) == 0 &&
            e->id_len == id_len && memcmp(e->id, id, id_len) == 0)
            return e;
    }
    return NULL;
}

int cairn__idem_find(cairn__idem_t *m, const char *stream, size_t stream_len,
                     const char *id, size_t id_len, cairn_append_result_t *res)
{
    unsigned char digest[16];
    uint64_t h = idem_hash(m, stream, stream_len, id, id_len, digest);
    pthread_mutex_lock(&m->lock);
    idem_entry_t *e = idem_lookup(m, h, digest, id, id_len);
    if (e)
        *res = e->res;
    pthread_mutex_unlock(&m->lock);
    return e != NULL;
}

static void unlink_entry(cairn__idem_t *m, uint32_t idx)
{
    uint32_t *link = &m->buckets[m->pool[idx].hash & m->mask];
    while (*link != idx)
        link = &m->pool[*link].next;
    *link = m->pool[idx].next;
}

void cairn__idem_put(cairn__idem_t *m, const char *stream, size_t stream_len,
                     const char *id, size_t id_len,
                     const cairn_append_result_t *res)
{
    unsigned char digest[16];
    uint64_t h = idem_hash(m, stream, stream_len, id, id_len, digest);
    pthread_mutex_lock(&m->lock);
    uint32_t idx = m->oldest;
    m->oldest = (m->oldest + 1) % m->window;
    idem_entry_t *e = &m->pool[idx];
    if (e->used)
        unlink_entry(m, idx);
    e->hash = h;
    memcpy(e->stream, digest, 16);
    e->id_len = (uint8_t)id_len;
    memcpy(e->id, id, id_len);
    e->res = *res;
    e->res.duplicate = 1;
    e->used = 1;
    e->next = m->buckets[h & m->mask];
    m->buckets[h & m->mask] = idx;
    pthread_mutex_unlock(&m->lock);
}
