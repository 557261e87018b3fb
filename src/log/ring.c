/*
 * ring.c — the lock-free multi-producer byte ring under the log.
 *
 * DESIGN
 *
 * Positions are logical byte offsets that only grow; the record at
 * position p lives at base + (p mod cap).  The ring's memory is mapped
 * twice back to back (memfd + two MAP_FIXED views), so a record that starts
 * near the end continues into the second view and is still contiguous:
 * records never straddle and no padding records exist.
 *
 * Claim.  One 64-bit word, `claim`, holds W = (U << 32) + S, where U is the
 * next free position in 8-byte units and S the next seq, both as unbounded
 * integers; an append of n events in b bytes adds ((b/8) << 32) + n to it
 * (one fetch-add, or one CAS when the ring is nearly full; see Space).  The low 32 bits are S mod 2^32; the
 * high 32 bits are (U + floor(S / 2^32)) mod 2^32, because the low half's
 * carries spill into the high half.  Given any reference seq R <= S with
 * S - R < 2^32 (the drain seq qualifies: the ring holds far fewer than 2^32
 * events), S = R + (uint32)(low - R), and then U mod 2^32 = high - S/2^32;
 * a reference position recovers U the same way.  So one fetch-add gives a
 * producer both its seqs and its bytes, in one total order: seq order is
 * ring order, with no second counter to disagree with.
 *
 * Commit.  Each record begins with an 8-byte tag.  A producer writes the
 * header and body with plain stores, then stores the tag
 * (position ^ tag_key) | 1 with release.  Readers acquire-load the tag and
 * accept the record only if it equals that value for the position they
 * expect: stale bytes of an earlier lap (even a payload an attacker shaped
 * like a tag) cannot match, because tag_key is a secret random per ring.
 * For a batch, the tags of records 2..n are stored before the first
 * record's, so a reader that sees the first sees the whole batch.  A
 * producer preempted between claim and commit delays only readers that
 * reach its record; other producers keep claiming and committing.
 *
 * Space.  free_pos is the position before which producers may overwrite.
 * It is the minimum of drain_pos (what the consumer released) and the
 * positions pinned by open readers.  While at least half the ring stays
 * free after a claim, a producer checks space and then fetch-adds; closer
 * to full it claims by CAS on the same word, which checks the space
 * exactly.  Without space it waits (spin, then a condition variable with a
 * deadline), so a full ring fails the append with CAIRN_ELOG_FULL without
 * claiming.  Only producers racing on the fetch-add path, together
 * claiming more than half the ring between one's check and its add, can
 * overshoot; the one left short then waits after claiming until the
 * consumer frees its space (it cannot give the claim back: a seq it holds
 * must be filled).  Batches are at most a quarter of the ring, so that
 * takes three producers preempted in that window at once.
 *
 * Readers.  A reader pins its position in a slot so the records it has not
 * passed are not overwritten.  A pin is taken at drain_pos under the
 * release lock, so no release can slip between reading drain_pos and
 * publishing the pin; afterwards the pin only moves forward.  Any thread
 * may recompute free_pos = min(drain_pos, pins) and raise it.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include "cairn/cairn.h"
#include "internal/clock.h"
#include "log/record.h"
#include "log/ring.h"

int cairn__ring_init(cairn__ring_t *r, uint64_t cap, uint64_t first_seq)
{
    memset(r, 0, sizeof *r);
    int fd = memfd_create("cairn-ring", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)cap) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    /* Reserve 2 * cap of address space, then map the file over both
     * halves. */
    uint8_t *base = mmap(NULL, 2 * cap, PROT_NONE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        int e = errno;
        close(fd);
        return -e;
    }
    /* MAP_POPULATE: fault the ring in now, not on the append path. */
    if (mmap(base, cap, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, 0) == MAP_FAILED ||
        mmap(base + cap, cap, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
             fd, 0) == MAP_FAILED) {
        int e = errno;
        munmap(base, 2 * cap);
        close(fd);
        return -e;
    }
    close(fd);
    r->base = base;
    r->cap = cap;
    randombytes_buf(&r->tag_key, sizeof r->tag_key);
    r->tag_key &= ~UINT64_C(7);
    atomic_init(&r->claim, first_seq);
    atomic_init(&r->free_pos, 0);
    atomic_init(&r->drain_pos, 0);
    atomic_init(&r->drain_seq, first_seq);
    for (int i = 0; i < CAIRN_RING_READERS_MAX; i++)
        atomic_init(&r->readers[i].pos, CAIRN__READER_FREE);
    atomic_init(&r->waiters, 0);
    atomic_init(&r->closed, 0);
    pthread_mutex_init(&r->wait_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->wait_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&r->release_lock, NULL);
    return 0;
}

void cairn__ring_destroy(cairn__ring_t *r)
{
    if (!r->base)
        return;
    munmap(r->base, 2 * r->cap);
    pthread_mutex_destroy(&r->wait_lock);
    pthread_cond_destroy(&r->wait_cond);
    pthread_mutex_destroy(&r->release_lock);
    r->base = NULL;
}

/* Recover (position, seq) from a claim word value w, given reference
 * values that are <= the true ones and within 2^32 units / seqs. */
static inline void decode_claim(uint64_t w, uint64_t ref_pos, uint64_t ref_seq,
                                uint64_t *pos, uint64_t *seq)
{
    uint64_t s = ref_seq + (uint32_t)((uint32_t)w - (uint32_t)ref_seq);
    uint32_t units = (uint32_t)(w >> 32) - (uint32_t)(s >> 32);
    uint64_t ref_units = ref_pos >> 3;
    *pos = (ref_units + (uint32_t)(units - (uint32_t)ref_units)) << 3;
    *seq = s;
}

void cairn__ring_head(cairn__ring_t *r, uint64_t *pos, uint64_t *seq)
{
    uint64_t rp = atomic_load_explicit(&r->drain_pos, memory_order_acquire);
    uint64_t rs = atomic_load_explicit(&r->drain_seq, memory_order_acquire);
    uint64_t w = atomic_load_explicit(&r->claim, memory_order_acquire);
    decode_claim(w, rp, rs, pos, seq);
}

static void store_max(_Atomic uint64_t *a, uint64_t v)
{
    uint64_t cur = atomic_load_explicit(a, memory_order_relaxed);
    while (cur < v &&
           !atomic_compare_exchange_weak_explicit(
               a, &cur, v, memory_order_release, memory_order_relaxed))
        ;
}

/*
 * free_pos = min(drain_pos, pinned reader positions), only ever raised.
 * Safe to run concurrently from any thread: every value it can compute is
 * a position no current reader or consumer still needs (see the Dekker
 * argument in the DESIGN note), and store_max keeps the largest.
 */
static void recompute_free(cairn__ring_t *r)
{
    uint64_t m = atomic_load_explicit(&r->drain_pos, memory_order_seq_cst);
    for (int i = 0; i < CAIRN_RING_READERS_MAX; i++) {
        uint64_t p =
            atomic_load_explicit(&r->readers[i].pos, memory_order_seq_cst);
        if (p < m)
            m = p;
    }
    store_max(&r->free_pos, m);
    if (atomic_load_explicit(&r->waiters, memory_order_seq_cst)) {
        pthread_mutex_lock(&r->wait_lock);
        pthread_cond_broadcast(&r->wait_cond);
        pthread_mutex_unlock(&r->wait_lock);
    }
}

static inline int has_space(cairn__ring_t *r, uint64_t end)
{
    /* Acquire pairs with store_max's release: whatever the consumer and
     * readers did with the freed bytes happened before we overwrite. */
    return end <=
           atomic_load_explicit(&r->free_pos, memory_order_acquire) + r->cap;
}

/* Wait until [.., end) is free.  With can_fail, give up at deadline. */
static int wait_space(cairn__ring_t *r, uint64_t end, uint64_t deadline_ns,
                      int can_fail)
{
    for (int i = 0; i < 256; i++) {
        if (has_space(r, end))
            return 0;
        cairn__cpu_relax();
    }
    for (;;) {
        recompute_free(r);
        if (has_space(r, end))
            return 0;
        if (r->starved)
            r->starved(r->starved_ctx);
        if (atomic_load_explicit(&r->closed, memory_order_acquire))
            return CAIRN_ECLOSED;
        uint64_t now = cairn__mono_ns();
        if (can_fail && now >= deadline_ns)
            return CAIRN_ELOG_FULL;
        /* Sleep until a release signals, at most 10 ms: readers moving
         * their pins forward do not signal, so poll at a bounded rate. */
        uint64_t until = now + 10000000u;
        if (can_fail && deadline_ns < until)
            until = deadline_ns;
        struct timespec ts = {(time_t)(until / 1000000000u),
                              (long)(until % 1000000000u)};
        pthread_mutex_lock(&r->wait_lock);
        atomic_fetch_add_explicit(&r->waiters, 1, memory_order_seq_cst);
        if (!has_space(r, end) &&
            !atomic_load_explicit(&r->closed, memory_order_acquire))
            pthread_cond_timedwait(&r->wait_cond, &r->wait_lock, &ts);
        atomic_fetch_sub_explicit(&r->waiters, 1, memory_order_seq_cst);
        pthread_mutex_unlock(&r->wait_lock);
    }
}

int cairn__ring_claim(cairn__ring_t *r, uint64_t bytes, uint32_t nseq,
                      uint64_t deadline_ns, cairn__claim_t *out)
{
    const uint64_t delta = ((bytes >> 3) << 32) + nseq;
    uint64_t rp = atomic_load_explicit(&r->drain_pos, memory_order_acquire);
    uint64_t rs = atomic_load_explicit(&r->drain_seq, memory_order_acquire);
    uint64_t w = atomic_load_explicit(&r->claim, memory_order_relaxed);
    uint64_t head, seq;
    decode_claim(w, rp, rs, &head, &seq);
    /* With half the ring or more left after this claim, one fetch-add:
     * racing producers could overshoot only by claiming more than half
     * the ring between one's check and its add.  Closer to full, claim by
     * CAS on the same word, which checks space exactly, so a full ring
     * never leaves a producer holding a claim it cannot fill. */
    if (has_space(r, head + bytes + r->cap / 2)) {
        /* The claim itself orders nothing: record contents are published
         * by their tags and space by free_pos, so relaxed suffices. */
        w = atomic_fetch_add_explicit(&r->claim, delta, memory_order_relaxed);
        decode_claim(w, rp, rs, &out->pos, &out->seq);
        if (!has_space(r, out->pos + bytes)) {
            int rc = wait_space(r, out->pos + bytes, 0, 0);
            if (rc < 0)
                return rc;
        }
        out->ptr = cairn__ring_at(r, out->pos);
        return 0;
    }
    for (;;) {
        if (!has_space(r, head + bytes)) {
            int rc = wait_space(r, head + bytes, deadline_ns, 1);
            if (rc < 0)
                return rc;
            rp = atomic_load_explicit(&r->drain_pos, memory_order_acquire);
            rs = atomic_load_explicit(&r->drain_seq, memory_order_acquire);
            w = atomic_load_explicit(&r->claim, memory_order_relaxed);
        } else if (atomic_compare_exchange_weak_explicit(
                       &r->claim, &w, w + delta, memory_order_relaxed,
                       memory_order_relaxed)) {
            decode_claim(w, rp, rs, &out->pos, &out->seq);
            out->ptr = cairn__ring_at(r, out->pos);
            return 0;
        }
        /* w holds the current claim word (reloaded or from the failed
         * CAS): recompute the head it stands for. */
        decode_claim(w, rp, rs, &head, &seq);
    }
}

int cairn__ring_reader_open(cairn__ring_t *r, uint64_t *pos, uint64_t *seq)
{
    /* Under release_lock the drain point cannot move, so the pin is taken
     * at a consistent (drain_pos, drain_seq) and any later release, which
     * needs the lock, scans the slots after our store and sees the pin. */
    int rc = CAIRN_ETOO_MANY_READERS;
    pthread_mutex_lock(&r->release_lock);
    uint64_t d = atomic_load_explicit(&r->drain_pos, memory_order_relaxed);
    for (int i = 0; i < CAIRN_RING_READERS_MAX; i++) {
        uint64_t expect = CAIRN__READER_FREE;
        if (atomic_compare_exchange_strong_explicit(&r->readers[i].pos, &expect,
                                                    d, memory_order_seq_cst,
                                                    memory_order_relaxed)) {
            *pos = d;
            *seq = atomic_load_explicit(&r->drain_seq, memory_order_relaxed);
            rc = i;
            break;
        }
    }
    pthread_mutex_unlock(&r->release_lock);
    return rc;
}

void cairn__ring_reader_close(cairn__ring_t *r, int slot)
{
    atomic_store_explicit(&r->readers[slot].pos, CAIRN__READER_FREE,
                          memory_order_seq_cst);
    recompute_free(r);
}

uint64_t cairn__ring_release(cairn__ring_t *r, uint64_t upto)
{
    pthread_mutex_lock(&r->release_lock);
    uint64_t pos = atomic_load_explicit(&r->drain_pos, memory_order_relaxed);
    uint64_t seq = atomic_load_explicit(&r->drain_seq, memory_order_relaxed);
    while (seq <= upto) {
        const cairn__rec_hdr_t *h =
            (const cairn__rec_hdr_t *)cairn__ring_at(r, pos);
        /* Acquire pairs with the producer's release of the tag: the header
         * we read next is complete. */
        if (atomic_load_explicit(&((cairn__rec_hdr_t *)h)->tag,
                                 memory_order_acquire) !=
            cairn__ring_tag(r, pos))
            break;
        pos += h->rec_len;
        seq = h->seq + 1;
    }
    atomic_store_explicit(&r->drain_seq, seq, memory_order_seq_cst);
    atomic_store_explicit(&r->drain_pos, pos, memory_order_seq_cst);
    pthread_mutex_unlock(&r->release_lock);
    recompute_free(r);
    return seq;
}

void cairn__ring_release_to(cairn__ring_t *r, uint64_t pos, uint64_t seq)
{
    pthread_mutex_lock(&r->release_lock);
    atomic_store_explicit(&r->drain_seq, seq, memory_order_seq_cst);
    atomic_store_explicit(&r->drain_pos, pos, memory_order_seq_cst);
    pthread_mutex_unlock(&r->release_lock);
    recompute_free(r);
}

void cairn__ring_on_starved(cairn__ring_t *r, cairn__ring_starved_fn fn,
                            void *ctx)
{
    r->starved = fn;
    r->starved_ctx = ctx;
}

void cairn__ring_close(cairn__ring_t *r)
{
    atomic_store_explicit(&r->closed, 1, memory_order_release);
    pthread_mutex_lock(&r->wait_lock);
    pthread_cond_broadcast(&r->wait_cond);
    pthread_mutex_unlock(&r->wait_lock);
}
