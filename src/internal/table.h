/* table.h (internal) — the stream table's slot layout and its reclamation
 * sections, shared by the log and the guard (src/table/). */
#ifndef CAIRN_INTERNAL_TABLE_H
#define CAIRN_INTERNAL_TABLE_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include <sodium.h>

#include "cairn/table.h"
#include "internal/clock.h"

/* Slot tags: 0 empty; INIT while an insert fills the slot; TOMB once its
 * stream was evicted (lookups skip it, inserts may reuse it after a grace
 * period); DEAD while the eviction's grace period runs; (siphash | 1) once
 * ready.  Ready tags are odd, the others even. */
#define CAIRN__TAG_EMPTY UINT64_C(0)
#define CAIRN__TAG_INIT UINT64_C(2)
#define CAIRN__TAG_TOMB UINT64_C(4)
#define CAIRN__TAG_DEAD UINT64_C(6)

/*
 * One stream: two cache lines.  The first holds the key (tag, name) and
 * the packed state (include/cairn/table.h): what every lookup and every
 * state update touches.  first_seq/last_seq are written by the append that
 * holds BUSY and read relaxed by anyone.  name is immutable while the tag
 * is ready.  The second line holds statistics, updated with relaxed
 * fetch-adds by whoever counts them and read as a snapshot.
 */
typedef struct cairn__stream {
    _Atomic uint64_t tag;
    _Atomic uint64_t state;
    _Atomic uint64_t breaker;
    _Atomic uint64_t throttle;
    _Atomic uint64_t first_seq;
    _Atomic uint64_t last_seq;
    char *name;
    uint8_t name_len;
    uint8_t pad0_[64 - 7 * 8 - 1];
    /* second line: statistics */
    _Atomic uint64_t last_active_ns; /* guard clock at the last admission */
    _Atomic uint64_t successes;
    _Atomic uint64_t failures;
    _Atomic uint64_t throttled;        /* refused by the throttle, total */
    _Atomic uint64_t throttled_episode; /* refused in the current episode */
    _Atomic uint64_t breaker_rejected; /* refused by the breaker, total */
    _Atomic uint64_t breaker_rejected_epoch; /* ... since the last transition */
    uint8_t pad1_[8];
} __attribute__((aligned(64))) cairn__stream_t;

_Static_assert(sizeof(cairn__stream_t) == 128, "a stream is two lines");
_Static_assert(__builtin_offsetof(cairn__stream_t, last_active_ns) == 64,
               "key and packed state share the first line");

/* Reader sections (epoch-based reclamation, docs/TABLE.md "Eviction"):
 * a reader counts itself in one of two parities; an evictor flips the
 * parity and waits for the old one to drain. */
#define CAIRN__SECTION_SHARDS 16

typedef struct cairn__section_shard {
    _Atomic uint64_t n;
    char pad_[56];
} cairn__section_shard_t;

/* Re-derive a returning stream from the log: its version into *version,
 * its first/last seq into the slot.  Called under the table lock, before
 * the slot is published. */
typedef int (*cairn__rederive_fn)(void *ctx, cairn__stream_t *s,
                                  uint64_t *version);

struct cairn_table {
    cairn__stream_t *slots;
    uint64_t mask;
    uint32_t max;
    int enhanced;
    _Atomic uint32_t count;  /* live streams (not tombstones) */
    _Atomic uint64_t evictions;
    pthread_mutex_t lock;    /* inserts and evictions (both modes); every
                                lookup too in the twin */
    uint64_t hand;           /* eviction scan position (under lock) */
    uint32_t tombs;          /* TOMB + DEAD slots (under lock) */
    /* Eviction policy, set by the log (guard_state.c); evict_ok decides
     * whether a stream may go, rederive reloads one that comes back. */
    int (*evict_ok)(void *ctx, cairn__stream_t *s);
    cairn__rederive_fn rederive;
    void *policy_ctx;
    /* Names evicted (a Bloom filter over their tags, under lock): a new
     * name that misses it has no history to re-derive. */
    uint64_t *bloom;
    uint64_t bloom_mask; /* in bits */
    /* Evicted slots waiting for their grace period (under lock). */
    struct cairn__dead { uint64_t idx, gen; } *dead;
    size_t ndead, dead_cap;
    uint64_t gen;            /* parity flips so far (under lock) */
    _Atomic unsigned parity; /* gen & 1, read by readers entering */
    cairn__section_shard_t sections[2][CAIRN__SECTION_SHARDS];
    unsigned char key[crypto_shorthash_KEYBYTES];
};

/*
 * Find a stream; with create, insert it when missing (evicting an idle
 * stream when the table is full).  The name must already be validated.
 * Returns 0 and *out, CAIRN_ENOT_FOUND (create == 0), CAIRN_ETABLE_FULL,
 * -ENOMEM, or what re-deriving a returning stream returned.
 *
 * *out stays valid (the same stream) only while the caller is inside a
 * section (cairn__table_enter .. _exit) that began before the call.
 */
int cairn__table_find(cairn_table_t *t, const char *name, size_t len,
                      int create, cairn__stream_t **out);

/* Enter / leave a reader section.  Sections nest per thread; the token
 * from enter goes to the matching exit. */
unsigned cairn__table_enter(cairn_table_t *t);
void cairn__table_exit(cairn_table_t *t, unsigned token);

/* Slot index of a stream (for tests and statistics). */
static inline uint64_t cairn__table_index(const cairn_table_t *t,
                                          const cairn__stream_t *s)
{
    return (uint64_t)(s - t->slots);
}

/* Probe length of the longest chain a lookup may walk now (tests). */
uint64_t cairn__table_max_probe(cairn_table_t *t);

/*
 * A section for the rest of the enclosing block, left on every return:
 *   CAIRN__TABLE_SECTION(log->table);
 */
typedef struct cairn__section_scope {
    cairn_table_t *t;
    unsigned token;
} cairn__section_scope_t;

static inline void cairn__section_scope_end(cairn__section_scope_t *sc)
{
    cairn__table_exit(sc->t, sc->token);
}

#define CAIRN__TABLE_SECTION(table)                                            \
    cairn__section_scope_t cairn__scope_                                       \
        __attribute__((cleanup(cairn__section_scope_end))) = {                 \
            (table), cairn__table_enter(table)}

/*
 * The stream's state word once no append holds BUSY: spin briefly (the
 * holder is inside one ring claim), then yield so a preempted holder can
 * run.  Acquire pairs with the append's release of BUSY, which publishes
 * first_seq and last_seq with the new version.
 */
static inline uint64_t cairn__stream_settled(cairn__stream_t *s)
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

#endif
