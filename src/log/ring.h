/* ring.h (internal) — the lock-free byte ring under the log; see ring.c. */
#ifndef CAIRN_LOG_RING_H
#define CAIRN_LOG_RING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cairn/limits.h"

#define CAIRN__CACHELINE 64
#define CAIRN__READER_FREE UINT64_MAX

/* Called (from the space-wait slow path) when producers are blocked on a
 * full ring, so a sleeping consumer can be woken.  Set once before use. */
typedef void (*cairn__ring_starved_fn)(void *ctx);

typedef struct cairn__ring_reader {
    _Atomic uint64_t pos; /* pinned position, or CAIRN__READER_FREE */
    char pad_[CAIRN__CACHELINE - sizeof(uint64_t)];
} cairn__ring_reader_t;

typedef struct cairn__ring {
    /* read-only after init */
    uint8_t *base;      /* cap bytes mapped twice back to back */
    uint64_t cap;       /* bytes, a power of two */
    uint64_t tag_key;   /* random, bit 0 clear; see cairn__ring_tag */

    /* claim word: ((position / 8) << 32) + next seq, added to by one
     * fetch-add per append; see ring.c for how both are recovered */
    _Alignas(CAIRN__CACHELINE) _Atomic uint64_t claim;

    /* [.., free_pos) may be overwritten by producers */
    _Alignas(CAIRN__CACHELINE) _Atomic uint64_t free_pos;

    /* [.., drain_pos) has been consumed (released or written out);
     * drain_seq is the seq of the record at drain_pos */
    _Alignas(CAIRN__CACHELINE) _Atomic uint64_t drain_pos;
    _Atomic uint64_t drain_seq;

    _Alignas(CAIRN__CACHELINE) cairn__ring_reader_t readers[CAIRN_RING_READERS_MAX];

    _Alignas(CAIRN__CACHELINE) _Atomic uint32_t waiters;
    _Atomic int closed;
    pthread_mutex_t wait_lock;
    pthread_cond_t wait_cond;
    pthread_mutex_t release_lock;
    cairn__ring_starved_fn starved;
    void *starved_ctx;
} cairn__ring_t;

/* A claimed region. */
typedef struct cairn__claim {
    uint64_t pos;  /* logical byte position (monotonic) */
    uint64_t seq;  /* first seq of the claim */
    uint8_t *ptr;  /* where to write: contiguous for the whole claim */
} cairn__claim_t;

/* Map a ring of cap bytes (a power of two, multiple of the page size);
 * first_seq is the seq of the first record.  0, -errno. */
int cairn__ring_init(cairn__ring_t *r, uint64_t cap, uint64_t first_seq);
void cairn__ring_destroy(cairn__ring_t *r);

/* The commit marker of the record at position pos. */
static inline uint64_t cairn__ring_tag(const cairn__ring_t *r, uint64_t pos)
{
    return (pos ^ r->tag_key) | 1;
}

static inline uint8_t *cairn__ring_at(const cairn__ring_t *r, uint64_t pos)
{
    return r->base + (pos & (r->cap - 1));
}

/*
 * Claim bytes (a multiple of 8, <= cap / 4) and nseq seqs: one fetch-add
 * while at least half the ring stays free after the claim, a CAS on the
 * same word (exact space check) closer to full.  Without space, waits
 * until deadline_ns (monotonic) and fails with CAIRN_ELOG_FULL, having
 * claimed nothing.  Only if producers racing on the fetch-add path claim
 * more than half the ring between one's check and its add does that one
 * wait after claiming, until space is released or the ring is closed
 * (CAIRN_ECLOSED).  0 on success.
 */
int cairn__ring_claim(cairn__ring_t *r, uint64_t bytes, uint32_t nseq,
                      uint64_t deadline_ns, cairn__claim_t *out);

/* The position and seq the next claim will get (a snapshot). */
void cairn__ring_head(cairn__ring_t *r, uint64_t *pos, uint64_t *seq);

/* Pin a reader slot at drain_pos or later; returns the slot index (>= 0)
 * and the pinned position and its seq, or CAIRN_ETOO_MANY_READERS. */
int cairn__ring_reader_open(cairn__ring_t *r, uint64_t *pos, uint64_t *seq);
/* Move a pinned reader forward (records before pos may be reused). */
static inline void cairn__ring_reader_move(cairn__ring_t *r, int slot,
                                           uint64_t pos)
{
    atomic_store_explicit(&r->readers[slot].pos, pos, memory_order_release);
}
void cairn__ring_reader_close(cairn__ring_t *r, int slot);

/* Mark every committed record up to and including seq upto as consumed,
 * and free the space no reader pins.  Returns the new drain seq. */
uint64_t cairn__ring_release(cairn__ring_t *r, uint64_t upto);

/* The single consumer (the storage writer) has consumed everything before
 * position pos, whose record has seq seq: move the drain point there
 * directly, without walking, and free the space no reader pins. */
void cairn__ring_release_to(cairn__ring_t *r, uint64_t pos, uint64_t seq);

void cairn__ring_on_starved(cairn__ring_t *r, cairn__ring_starved_fn fn,
                            void *ctx);

/* Wake producers waiting for space and fail their waits: the ring is
 * closing. */
void cairn__ring_close(cairn__ring_t *r);

#endif
