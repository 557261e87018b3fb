/*
 * cell.h — seqlock value cells: a small fixed struct of up to
 * CAIRN_CELL_WORDS_MAX 64-bit words (price, PnL, time, version ...) that
 * one writer updates without a lock and any number of readers load as a
 * consistent whole.
 *
 * DESIGN.  A cell is a cairn_seqlock_t (include/cairn/seqlock.h) followed
 * by its words, two cache lines in all.  The writer brackets its relaxed
 * atomic stores with cairn_seqlock_write_begin/_end; a reader loads the
 * words as relaxed atomics between cairn_seqlock_read_begin and
 * cairn_seqlock_read_retry and starts over when a write overlapped.  The
 * memory-ordering argument is the seqlock's (see seqlock.h): an accepted
 * read returns exactly the words of one completed store, never a mix of
 * two.  Readers never write the cell, so they cost the writer nothing;
 * their statistics go to a struct each reader owns.
 *
 * Doubles are stored as their bit patterns (cairn_cell_from_f64 /
 * cairn_cell_to_f64) so every word is one _Atomic uint64_t.
 *
 * Thread safety: cairn_cell_store() is for ONE writer at a time (the
 * caller guarantees it: a single owning thread or its own lock);
 * cairn_cell_store_mw() may be called by several writers (it takes the
 * sequence itself as a spin lock, see cairn_seqlock_write_begin_mw).
 * cairn_cell_load() may be called by any number of threads at any time.
 */
#ifndef CAIRN_CELL_H
#define CAIRN_CELL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cairn/limits.h"
#include "cairn/seqlock.h"

#ifdef __cplusplus
extern "C" {
#endif

/* public: embed it; align it (it is 128 bytes, two cache lines). */
typedef struct cairn_cell {
    cairn_seqlock_t lock;                         /* private */
    _Atomic uint64_t word[CAIRN_CELL_WORDS_MAX];  /* private */
} __attribute__((aligned(64))) cairn_cell_t;

/* Per-reader statistics: owned by one reader thread (plain fields). */
typedef struct cairn_cell_read_stats {
    uint64_t reads;       /* completed loads */
    uint64_t retries;     /* extra attempts because a write overlapped */
    uint64_t max_retries; /* most retries one load needed */
} cairn_cell_read_stats_t;

/* Initialise every word to 0 with sequence 0.  Not thread-safe: call before
 * sharing the cell. */
static inline void cairn_cell_init(cairn_cell_t *c)
{
    cairn_seqlock_init(&c->lock, 0);
    for (unsigned i = 0; i < CAIRN_CELL_WORDS_MAX; i++)
        atomic_init(&c->word[i], 0);
}

static inline uint64_t cairn_cell_from_f64(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static inline double cairn_cell_to_f64(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* The word stores of one write (words[0..n) into word[first..first+n)),
 * between write_begin and write_end. */
static inline void cairn__cell_put(cairn_cell_t *c, size_t first,
                                   const uint64_t *words, size_t n)
{
    /* Relaxed: ordered after the odd sequence by write_begin's release
     * fence and before the even one by write_end's release store. */
    for (size_t i = 0; i < n; i++)
        atomic_store_explicit(&c->word[first + i], words[i],
                              memory_order_relaxed);
}

/*
 * Store words[0..n) (n <= CAIRN_CELL_WORDS_MAX; words borrowed) as one
 * update.  The single writer only.  Never blocks, never fails.
 */
static inline void cairn_cell_store(cairn_cell_t *c, const uint64_t *words,
                                    size_t n)
{
    uint64_t token = cairn_seqlock_write_begin(&c->lock);
    cairn__cell_put(c, 0, words, n);
    cairn_seqlock_write_end(&c->lock, token);
}

/* The same for cells with several writers: spins (yielding) while another
 * writer is inside. */
static inline void cairn_cell_store_mw(cairn_cell_t *c, const uint64_t *words,
                                       size_t n)
{
    uint64_t token = cairn_seqlock_write_begin_mw(&c->lock);
    cairn__cell_put(c, 0, words, n);
    cairn_seqlock_write_end(&c->lock, token);
}

/*
 * Load words[0..n) of one update into out (n <= CAIRN_CELL_WORDS_MAX).
 * Retries while a write overlaps; returns the number of retries (0 on the
 * fast path).  Thread-safe, any number of readers; never writes the cell.
 */
static inline int cairn_cell_load(const cairn_cell_t *c, uint64_t *out,
                                  size_t n)
{
    int retries = 0;
    for (;;) {
        uint64_t s = cairn_seqlock_read_begin(&c->lock);
        /* Relaxed atomic loads: racing a writer is allowed; the seqlock
         * re-check below throws away a torn result. */
        for (size_t i = 0; i < n; i++)
            out[i] = atomic_load_explicit(
                &((cairn_cell_t *)c)->word[i], memory_order_relaxed);
        if (!cairn_seqlock_read_retry(&c->lock, s))
            return retries;
        retries++;
    }
}

/* cairn_cell_load() that also counts into the caller's own stats. */
static inline int cairn_cell_load_stats(const cairn_cell_t *c, uint64_t *out,
                                        size_t n,
                                        cairn_cell_read_stats_t *stats)
{
    int r = cairn_cell_load(c, out, n);
    stats->reads++;
    stats->retries += (uint64_t)r;
    if ((uint64_t)r > stats->max_retries)
        stats->max_retries = (uint64_t)r;
    return r;
}

/* Updates stored since cairn_cell_init (relaxed; for statistics). */
static inline uint64_t cairn_cell_writes(const cairn_cell_t *c)
{
    return cairn_seqlock_sequence(&c->lock) / 2;
}

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_CELL_H */
