/*
 * seqlock.h — a C11-correct sequence lock for small structs that are read
 * far more often than they are written (metric cells, FSM value cells).
 *
 * DESIGN.  A seqlock is one 64-bit sequence word.  Even means "stable", odd
 * means "a writer is inside".  A writer makes it odd, stores the protected
 * words, and makes it even again, two higher than it started.  A reader
 * remembers an even value, loads the protected words, and accepts them only
 * if the sequence still holds that same value afterwards; otherwise it
 * retries.  Readers never write shared memory, so any number of them cost
 * the writer nothing.
 *
 * The memory-ordering argument (Boehm, "Can seqlocks get along with
 * programming language memory models?", 2012):
 *
 *   writer                              reader
 *   s = seq (relaxed)                   s1 = seq (acquire), until even
 *   seq = s + 1 (relaxed)               d  = data (relaxed atomic loads)
 *   fence(release)                      fence(acquire)
 *   data = ... (relaxed atomic stores)  s2 = seq (relaxed)
 *   seq = s + 2 (release)               accept d only if s1 == s2
 *
 * - If the reader's data loads saw any store a writer made after its
 *   release fence, that fence synchronises with the reader's acquire fence,
 *   so the writer's "seq = s + 1" happens before the reader's reload: s2 is
 *   at least s + 1 and differs from the even s1.  The read is retried.
 * - If s1 was read from a writer's "seq = s + 2" release store, the acquire
 *   load makes every data store of that write (and earlier ones) visible to
 *   the data loads, so they cannot return values older than that write.
 * Together: an accepted read saw exactly the data of one quiescent point.
 *
 * Every protected word must be an _Atomic object accessed with relaxed
 * loads and stores: a plain memcpy of data another thread is writing is a
 * data race and undefined behaviour in C11 even though the value would be
 * discarded (and ThreadSanitizer rightly reports it).
 *
 * The sequence is 64 bits so it cannot wrap during a read: at one write per
 * nanosecond a 64-bit counter takes 292 years to come back to the value a
 * reader holds.  Unsigned arithmetic wraps from UINT64_MAX - 1 (even) to
 * UINT64_MAX (odd) to 0 (even) correctly.
 *
 * Writers: cairn_seqlock_write_begin() is for ONE writer at a time — the
 * caller guarantees exclusion (a single owning thread, or its own mutex).
 * Two unsynchronised writers would both store s + 1 and the sequence could
 * end odd forever.  cairn_seqlock_write_begin_mw() admits several writers:
 * it claims the odd value with a compare-and-swap, so the odd sequence is
 * itself the writers' lock; use it only where writers rarely collide (for
 * example per-thread shards), because a second writer spins.
 */
#ifndef CAIRN_SEQLOCK_H
#define CAIRN_SEQLOCK_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* public: a seqlock.  Embed it next to the _Atomic words it protects. */
typedef struct cairn_seqlock {
    _Atomic uint64_t seq; /* private: even = stable, odd = write in progress */
} cairn_seqlock_t;

/* Static initialiser: a stable seqlock with sequence 0. */
#define CAIRN_SEQLOCK_INIT                                                     \
    {                                                                          \
        0                                                                      \
    }

/*
 * ThreadSanitizer does not model atomic_thread_fence and GCC (11+) warns
 * about every fence it sees under -fsanitize=thread.  The fence is still
 * emitted; TSan simply cannot use it to build happens-before.  That costs
 * nothing here: every word a seqlock protects is an _Atomic object, so
 * TSan has no plain access to report whatever the fences order.  The
 * warning is silenced for this header only.
 */
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) &&                       \
    !defined(__clang__) && __GNUC__ >= 11
#define CAIRN__SEQLOCK_NO_WTSAN 1
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
#endif

/* Spins this many times before yielding the CPU to a preempted writer. */
#define CAIRN__SEQLOCK_SPINS_BEFORE_YIELD 128u

/* A short pause inside spin loops (lets the sibling hyperthread run). */
static inline void cairn__seqlock_relax(unsigned *spins)
{
    if (++*spins % CAIRN__SEQLOCK_SPINS_BEFORE_YIELD == 0) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield" ::: "memory");
#endif
}

/*
 * Initialise sl with the given starting sequence (must be even; an odd
 * value is rounded down).  Not thread-safe: call before sharing sl.  Tests
 * use a start near UINT64_MAX to exercise the wrap.
 */
static inline void cairn_seqlock_init(cairn_seqlock_t *sl, uint64_t start)
{
    atomic_init(&sl->seq, start & ~(uint64_t)1);
}

/*
 * Begin a read.  Returns the even sequence to pass to
 * cairn_seqlock_read_retry().  Spins (yielding now and then) while a writer
 * is inside.  Never writes shared memory; any number of threads may read.
 */
static inline uint64_t cairn_seqlock_read_begin(const cairn_seqlock_t *sl)
{
    unsigned spins = 0;
    for (;;) {
        /* Acquire: pairs with the writer's release store of s + 2, so the
         * data loads that follow see at least that write's data. */
        uint64_t s = atomic_load_explicit(&((cairn_seqlock_t *)sl)->seq,
                                          memory_order_acquire);
        if ((s & 1) == 0)
            return s;
        cairn__seqlock_relax(&spins);
    }
}

/*
 * End a read.  Returns 0 if the data loaded since read_begin() returned
 * `start` is a consistent snapshot, non-zero if it must be discarded and
 * the read repeated from read_begin().
 */
static inline int cairn_seqlock_read_retry(const cairn_seqlock_t *sl,
                                           uint64_t start)
{
    /* Acquire fence: orders the relaxed data loads above before the
     * sequence reload below; if any data load saw a store made after a
     * writer's release fence, that writer's odd store is visible to the
     * reload.  An acquire *load* of seq would not do: it orders later
     * accesses, not the earlier data loads. */
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&((cairn_seqlock_t *)sl)->seq,
                                memory_order_relaxed) != start;
}

/*
 * Begin a write by the only writer (the caller guarantees no other writer
 * runs concurrently on sl).  Returns the token for cairn_seqlock_write_end().
 * Never blocks.
 */
static inline uint64_t cairn_seqlock_write_begin(cairn_seqlock_t *sl)
{
    /* Relaxed: only this thread writes seq. */
    uint64_t s = atomic_load_explicit(&sl->seq, memory_order_relaxed);
    atomic_store_explicit(&sl->seq, s + 1, memory_order_relaxed);
    /* Release fence: orders the odd store above before every data store
     * that follows, so a reader that sees new data also sees seq moved. */
    atomic_thread_fence(memory_order_release);
    return s;
}

/*
 * Begin a write where several threads may write sl.  Spins (yielding now
 * and then) while another writer is inside.  Returns the token for
 * cairn_seqlock_write_end().
 */
static inline uint64_t cairn_seqlock_write_begin_mw(cairn_seqlock_t *sl)
{
    unsigned spins = 0;
    uint64_t s = atomic_load_explicit(&sl->seq, memory_order_relaxed);
    for (;;) {
        /* Acquire on success: pairs with the previous writer's release
         * store of its s + 2, so this writer's loads of the data words see
         * that writer's stores (read-modify-write of counts stays exact). */
        if ((s & 1) == 0 &&
            atomic_compare_exchange_weak_explicit(&sl->seq, &s, s + 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed))
            break;
        if (s & 1) {
            cairn__seqlock_relax(&spins);
            s = atomic_load_explicit(&sl->seq, memory_order_relaxed);
        }
    }
    /* Release fence: as in cairn_seqlock_write_begin(), the odd sequence
     * is ordered before the data stores that follow. */
    atomic_thread_fence(memory_order_release);
    return s;
}

/* End the write begun with token `token` (from either write_begin). */
static inline void cairn_seqlock_write_end(cairn_seqlock_t *sl, uint64_t token)
{
    /* Release: orders every data store of this write before the even
     * sequence that readers (and the next _mw writer) acquire. */
    atomic_store_explicit(&sl->seq, token + 2, memory_order_release);
}

/* The current sequence (relaxed); for statistics and tests. */
static inline uint64_t cairn_seqlock_sequence(const cairn_seqlock_t *sl)
{
    return atomic_load_explicit(&((cairn_seqlock_t *)sl)->seq,
                                memory_order_relaxed);
}

#ifdef CAIRN__SEQLOCK_NO_WTSAN
#pragma GCC diagnostic pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_SEQLOCK_H */
