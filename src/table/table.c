/*
 * table.c — the stream table (include/cairn/table.h): lookup, insert,
 * eviction and the reader sections that make eviction safe.
 *
 * DESIGN.  Open addressing with linear probing over a power-of-two array of
 * 128-byte slots (key and packed state on the first cache line), at most
 * half of them live (2 x max_endpoints slots).  A name's home slot comes
 * from SipHash-2-4 under a per-table random key, so an outsider cannot aim
 * names at one run of slots.
 *
 * Tags: EMPTY, INIT (being filled), TOMB (free again), ready = the hash
 * with bit 0 set and bit 1 clear, dead = the same with bit 1 set (evicted,
 * waiting for its grace period).  Bits 2.. of a tag are the hash's, so the
 * home slot is (tag >> 2) & mask.
 *
 *   lookup  (lock-free in enhanced mode): from home, acquire-load each tag;
 *           a ready tag equal to ours is compared by length and
 *           sodium_memcmp over the name; EMPTY ends the chain; every other
 *           tag (INIT, TOMB, dead, other streams) is skipped.  An insert
 *           in flight is simply not seen yet.
 *   insert  (under t->lock in both modes): probe again; revive our own
 *           dead slot if the name is still there (its state is intact);
 *           otherwise, when max_endpoints streams are live, evict; claim
 *           the first TOMB or the EMPTY ending the chain, fill it, and, if
 *           the name may have been evicted before (Bloom filter), re-derive
 *           its version from the log; publish with a release store of the
 *           ready tag.  Inserts are serialised because a lock-free insert
 *           that may reuse tombstones can race a second insert of the same
 *           name into a different slot; the hot path (lookup of a known
 *           stream) never takes the lock.
 *   evict   (under t->lock): scan from a rotating hand for ready streams
 *           the policy accepts (idle, breaker closed, no throttle debt,
 *           not BUSY), store their tag dead (seq_cst), and remember the
 *           generation; nothing waits.
 *
 * RECLAMATION.  A thread that may hold a slot pointer is inside a section:
 * it counted itself in sections[p][shard] for the parity p it read, and
 * re-read the parity after counting (if it changed it backs out and
 * retries).  Under the lock, an insert flips the parity (gen++) whenever
 * the other parity has drained (its own section discounted), without ever
 * waiting.  A slot killed at generation g is reclaimed (name freed, tag
 * TOMB) once gen >= g + 2: flip g+1 needed every reader of the older parity
 * gone, flip g+2 every reader of the parity current at the kill; readers
 * that entered after flip g+1 read the parity that flip stored, which the
 * kill happens-before (through the lock), so they see the dead tag and
 * never pick the slot.  A straggler still appending to a dead slot keeps
 * working on the stream's real state: if the name returns before the
 * reclaim it revives that very slot, and after the reclaim every
 * straggler's events are committed, so re-deriving sees them.
 *
 * Tombstones go back to EMPTY once no stream's probe path crosses them
 * (checked over the rest of the run, when a slot is reclaimed and as the
 * eviction hand passes), which keeps chains short under churn; lookups
 * stay correct because no key they could be looking for lies beyond.
 *
 * The twin (enhanced_mode = 0) runs lookups under the same mutex.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cairn/limits.h"
#include "internal/table.h"

#define READY_TAG(h) (((h) | 1) & ~UINT64_C(2))
#define IS_READY(tag) (((tag)&3) == 1)
#define IS_DEAD(tag) (((tag)&3) == 3)
#define HOME(t, tag) (((tag) >> 2) & (t)->mask)

static uint64_t table_hash(const cairn_table_t *t, const char *name,
                           size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_shorthash(out, (const unsigned char *)name, len, t->key);
    memcpy(&h, out, sizeof h);
    return h;
}

int cairn_table_open(const cairn_table_opts_t *opts, cairn_table_t **out)
{
    uint32_t max = opts && opts->max_endpoints ? opts->max_endpoints
                                               : CAIRN_MAX_ENDPOINTS_DEFAULT;
    if (max > CAIRN_MAX_ENDPOINTS_CAP)
        return CAIRN_EBAD_OPTION;
    if (sodium_init() < 0)
        return -EIO;
    cairn_table_t *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    uint64_t n = 16;
    while (n < 2 * (uint64_t)max)
        n <<= 1;
    uint64_t bits = 64;
    while (bits < (uint64_t)max * CAIRN_EVICT_BLOOM_BITS_PER_ENDPOINT)
        bits <<= 1;
    /* Anonymous memory is zeroed and page aligned, and untouched slots
     * cost no RAM until a stream lands in them. */
    void *mem = mmap(NULL, n * sizeof(cairn__stream_t),
                     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    t->bloom = calloc(bits / 64, sizeof(uint64_t));
    if (mem == MAP_FAILED || !t->bloom) {
        if (mem != MAP_FAILED)
            munmap(mem, n * sizeof(cairn__stream_t));
        free(t->bloom);
        free(t);
        return -ENOMEM;
    }
    t->slots = mem;
    t->mask = n - 1;
    t->bloom_mask = bits - 1;
    t->max = max;
    t->enhanced = opts ? opts->enhanced_mode : 1;
    pthread_mutex_init(&t->lock, NULL);
    crypto_shorthash_keygen(t->key);
    *out = t;
    return 0;
}

void cairn_table_close(cairn_table_t *t)
{
    if (!t)
        return;
    for (uint64_t i = 0; i <= t->mask; i++)
        free(t->slots[i].name);
    munmap(t->slots, (t->mask + 1) * sizeof(cairn__stream_t));
    pthread_mutex_destroy(&t->lock);
    sodium_memzero(t->key, sizeof t->key);
    free(t->bloom);
    free(t->dead);
    free(t);
}

uint32_t cairn_table_count(const cairn_table_t *t)
{
    return atomic_load_explicit(&((cairn_table_t *)t)->count,
                                memory_order_relaxed);
}

/* ---- reader sections ----------------------------------------------------- */

#define TLS_TABLES 4
#define TOKEN_UNTRACKED 0x100u

typedef struct tls_section {
    cairn_table_t *t;
    unsigned token;
    unsigned depth;
} tls_section_t;

static _Thread_local tls_section_t tls_sections[TLS_TABLES];
static _Thread_local unsigned tls_shard; /* shard + 1; 0 = not chosen */
static _Atomic unsigned next_shard;

static unsigned my_shard(void)
{
    if (!tls_shard)
        tls_shard = atomic_fetch_add_explicit(&next_shard, 1,
                                              memory_order_relaxed) %
                        CAIRN__SECTION_SHARDS +
                    1;
    return tls_shard - 1;
}

unsigned cairn__table_enter(cairn_table_t *t)
{
    tls_section_t *free_e = NULL;
    for (int i = 0; i < TLS_TABLES; i++) {
        if (tls_sections[i].depth && tls_sections[i].t == t) {
            tls_sections[i].depth++;
            return tls_sections[i].token;
        }
        if (!tls_sections[i].depth && !free_e)
            free_e = &tls_sections[i];
    }
    unsigned shard = my_shard(), p;
    for (;;) {
        /* seq_cst (all three): if our count lands after an evictor found
         * parity p drained, our re-read of the parity comes after its flip
         * in the single total order, sees the change, and we back out. */
        p = atomic_load(&t->parity);
        atomic_fetch_add(&t->sections[p][shard].n, 1);
        if (atomic_load(&t->parity) == p)
            break;
        atomic_fetch_sub(&t->sections[p][shard].n, 1);
    }
    unsigned token = p << 4 | shard;
    if (free_e) {
        free_e->t = t;
        free_e->token = token;
        free_e->depth = 1;
    } else {
        token |= TOKEN_UNTRACKED;
    }
    return token;
}

void cairn__table_exit(cairn_table_t *t, unsigned token)
{
    if (!(token & TOKEN_UNTRACKED)) {
        for (int i = 0; i < TLS_TABLES; i++) {
            tls_section_t *e = &tls_sections[i];
            if (e->depth && e->t == t) {
                if (--e->depth)
                    return;
                e->t = NULL;
                break;
            }
        }
    }
    /* Release: every access this section made to a slot happens-before
     * the evictor's (seq_cst) load that sees the count drop. */
    atomic_fetch_sub_explicit(&t->sections[(token >> 4) & 1][token & 0xf].n,
                              1, memory_order_release);
}

/* The calling thread's own count in parity p (it is inside a section when
 * it inserts from an append). */
static uint64_t own_count(cairn_table_t *t, unsigned p)
{
    for (int i = 0; i < TLS_TABLES; i++)
        if (tls_sections[i].depth && tls_sections[i].t == t)
            return ((tls_sections[i].token >> 4) & 1) == p;
    return 0;
}

/* A TOMB may become EMPTY when no stream's probe path crosses it: walk
 * the rest of its run and check that every stream there (live or dead)
 * has its home after the TOMB.  Lock-free lookups stay correct: none of
 * them can be heading past this slot to a key that exists.  Runs at load
 * 1/2 are short; a long one is left alone. */
static int clear_tomb_locked(cairn_table_t *t, uint64_t i)
{
    if (atomic_load_explicit(&t->slots[i].tag, memory_order_relaxed) !=
        CAIRN__TAG_TOMB)
        return 0;
    uint64_t j = (i + 1) & t->mask;
    for (int walked = 0;; walked++, j = (j + 1) & t->mask) {
        uint64_t tag =
            atomic_load_explicit(&t->slots[j].tag, memory_order_relaxed);
        if (tag == CAIRN__TAG_EMPTY)
            break;
        if (walked >= 256)
            return 0;
        if ((tag & 1) &&
            ((j - HOME(t, tag)) & t->mask) >= ((j - i) & t->mask))
            return 0; /* this stream's path runs through slot i */
    }
    atomic_store_explicit(&t->slots[i].tag, CAIRN__TAG_EMPTY,
                          memory_order_release);
    t->tombs--;
    return 1;
}

static void free_slot_locked(cairn_table_t *t, uint64_t idx)
{
    cairn__stream_t *s = &t->slots[idx];
    free(s->name);
    s->name = NULL;
    s->name_len = 0;
    /* Lookups skip TOMB; an insert may reuse it.  Clearing it may in turn
     * free the tombstones before it. */
    atomic_store_explicit(&s->tag, CAIRN__TAG_TOMB, memory_order_release);
    t->tombs++;
    for (uint64_t i = idx; clear_tomb_locked(t, i); i = (i - 1) & t->mask)
        ;
}

/* Flip the parity as often as the old one has drained (at most twice), and
 * reclaim the slots whose grace period is over.  Never waits. */
static void advance_grace_locked(cairn_table_t *t)
{
    for (int flips = 0; flips < 2 && t->ndead; flips++) {
        unsigned old = (unsigned)(t->gen & 1) ^ 1;
        uint64_t sum = 0;
        for (int k = 0; k < CAIRN__SECTION_SHARDS; k++)
            sum += atomic_load(&t->sections[old][k].n);
        if (sum != own_count(t, old))
            break;
        t->gen++;
        atomic_store(&t->parity, (unsigned)(t->gen & 1));
    }
    size_t keep = 0;
    for (size_t i = 0; i < t->ndead; i++) {
        uint64_t idx = t->dead[i].idx;
        if (t->dead[i].gen + 2 <= t->gen &&
            IS_DEAD(atomic_load_explicit(&t->slots[idx].tag,
                                         memory_order_relaxed)))
            free_slot_locked(t, idx);
        else if (IS_DEAD(atomic_load_explicit(&t->slots[idx].tag,
                                              memory_order_relaxed)))
            t->dead[keep++] = t->dead[i];
        /* a revived slot simply drops out of the list */
    }
    t->ndead = keep;
}

static void bloom_add(cairn_table_t *t, uint64_t tag)
{
    uint64_t a = tag >> 2, b = (tag >> 32) | 1;
    for (uint64_t j = 0; j < 4; j++) {
        uint64_t bit = (a + j * b) & t->bloom_mask;
        t->bloom[bit / 64] |= UINT64_C(1) << (bit % 64);
    }
}

static int bloom_has(const cairn_table_t *t, uint64_t tag)
{
    uint64_t a = tag >> 2, b = (tag >> 32) | 1;
    for (uint64_t j = 0; j < 4; j++) {
        uint64_t bit = (a + j * b) & t->bloom_mask;
        if (!(t->bloom[bit / 64] & (UINT64_C(1) << (bit % 64))))
            return 0;
    }
    return 1;
}

/* Does the probe path of the stream at idx (home .. idx) cross a TOMB? */
static int behind_tomb(const cairn_table_t *t, uint64_t idx, uint64_t tag)
{
    for (uint64_t i = HOME(t, tag); i != idx; i = (i + 1) & t->mask)
        if (atomic_load_explicit(&t->slots[i].tag, memory_order_relaxed) ==
            CAIRN__TAG_TOMB)
            return 1;
    return 0;
}

static void kill_locked(cairn_table_t *t, uint64_t idx, uint64_t tag)
{
    /* seq_cst: ordered before the parity flips that start this slot's
     * grace period (see RECLAMATION). */
    atomic_store(&t->slots[idx].tag, tag | 2);
    bloom_add(t, tag);
    t->dead[t->ndead].idx = idx;
    t->dead[t->ndead].gen = t->gen;
    t->ndead++;
    atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->evictions, 1, memory_order_relaxed);
}

/* Evict up to CAIRN_EVICT_BATCH streams the policy accepts, looking at up
 * to CAIRN_EVICT_SCAN_MAX slots from the hand.  Streams whose probe path
 * crosses a tombstone go first: once they leave, the tombstone can be
 * cleared, which is what keeps chains short under churn.  Returns how
 * many were evicted. */
static unsigned evict_locked(cairn_table_t *t)
{
    if (!t->evict_ok)
        return 0;
    if (t->ndead + CAIRN_EVICT_BATCH > t->dead_cap) {
        size_t cap = t->dead_cap ? t->dead_cap * 2 : 64;
        void *p = realloc(t->dead, cap * sizeof *t->dead);
        if (!p)
            return 0;
        t->dead = p;
        t->dead_cap = cap;
    }
    /* Dead slots and tombstones count against the table's physical room:
     * keep a quarter of the slots EMPTY so that runs, and misses, stay
     * short.  (A
     * reader that stays in a section stalls reclamation; then evictions
     * stop here rather than fill the table with dead slots.) */
    const uint64_t slots = t->mask + 1;
    const uint64_t used = t->ndead + t->tombs + t->max;
    /* Past that point only streams sitting behind tombstones go: their
     * leaving lets the tombstones clear, which is how the room returns. */
    const int tombs_only = used + slots / 4 >= slots;
    uint64_t batch = tombs_only ? CAIRN_EVICT_BATCH : slots - slots / 4 - used;
    if (batch > CAIRN_EVICT_BATCH)
        batch = CAIRN_EVICT_BATCH;
    unsigned evicted = 0;
    const uint64_t scan = CAIRN_EVICT_SCAN_MAX < t->mask + 1
                              ? CAIRN_EVICT_SCAN_MAX
                              : t->mask + 1;
    const uint64_t start = t->hand;
    for (int pass = 0; pass < (tombs_only ? 1 : 2) && !evicted; pass++) {
        t->hand = start;
        for (uint64_t k = 0; k < scan && evicted < batch; k++) {
            uint64_t idx = t->hand;
            t->hand = (t->hand + 1) & t->mask;
            cairn__stream_t *s = &t->slots[idx];
            uint64_t tag = atomic_load_explicit(&s->tag, memory_order_relaxed);
            if (tag == CAIRN__TAG_TOMB) {
                /* the streams that made it necessary may have gone */
                clear_tomb_locked(t, idx);
                continue;
            }
            if (!IS_READY(tag) || (pass == 0 && !behind_tomb(t, idx, tag)) ||
                !t->evict_ok(t->policy_ctx, s))
                continue;
            kill_locked(t, idx, tag);
            evicted++;
        }
    }
    return evicted;
}

static int slot_matches(const cairn__stream_t *s, const char *name,
                        size_t len)
{
    return s->name_len == len && sodium_memcmp(s->name, name, len) == 0;
}

static cairn__stream_t *lookup(cairn_table_t *t, uint64_t ready,
                               const char *name, size_t len)
{
    uint64_t i = HOME(t, ready);
    for (uint64_t k = 0; k <= t->mask; k++) {
        cairn__stream_t *s = &t->slots[i];
        /* Acquire pairs with the inserter's release of the ready tag, so
         * name and name_len are visible once the tag is. */
        uint64_t tag = atomic_load_explicit(&s->tag, memory_order_acquire);
        if (tag == CAIRN__TAG_EMPTY)
            return NULL;
        if (tag == ready && slot_matches(s, name, len))
            return s;
        i = (i + 1) & t->mask;
    }
    return NULL;
}

static void reset_slot(cairn__stream_t *s)
{
    atomic_store_explicit(&s->state, 0, memory_order_relaxed);
    atomic_store_explicit(&s->breaker, 0, memory_order_relaxed);
    atomic_store_explicit(&s->throttle, 0, memory_order_relaxed);
    atomic_store_explicit(&s->first_seq, 0, memory_order_relaxed);
    atomic_store_explicit(&s->last_seq, 0, memory_order_relaxed);
    atomic_store_explicit(&s->last_active_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&s->successes, 0, memory_order_relaxed);
    atomic_store_explicit(&s->failures, 0, memory_order_relaxed);
    atomic_store_explicit(&s->throttled, 0, memory_order_relaxed);
    atomic_store_explicit(&s->throttled_episode, 0, memory_order_relaxed);
    atomic_store_explicit(&s->breaker_rejected, 0, memory_order_relaxed);
    atomic_store_explicit(&s->breaker_rejected_epoch, 0,
                          memory_order_relaxed);
}

static int insert_locked(cairn_table_t *t, uint64_t ready, const char *name,
                         size_t len, cairn__stream_t **out)
{
    advance_grace_locked(t);
    for (int attempt = 0;; attempt++) {
        uint64_t i = HOME(t, ready), free_idx = UINT64_MAX;
        cairn__stream_t *dead = NULL;
        uint64_t k;
        for (k = 0; k <= t->mask; k++, i = (i + 1) & t->mask) {
            cairn__stream_t *s = &t->slots[i];
            uint64_t tag = atomic_load_explicit(&s->tag, memory_order_relaxed);
            if (tag == CAIRN__TAG_EMPTY) {
                if (free_idx == UINT64_MAX)
                    free_idx = i;
                break;
            }
            if (tag == ready && slot_matches(s, name, len)) {
                *out = s;
                return 0;
            }
            if (tag == (ready | 2) && slot_matches(s, name, len))
                dead = s;
            if (tag == CAIRN__TAG_TOMB && free_idx == UINT64_MAX)
                free_idx = i;
        }
        if (atomic_load_explicit(&t->count, memory_order_relaxed) >= t->max) {
            if (attempt == 0 && evict_locked(t))
                continue; /* eviction changed tags: probe again */
            return CAIRN_ETABLE_FULL;
        }
        if (dead) {
            /* Our own stream, evicted but not reclaimed: its state is
             * intact (stragglers may even have moved it on). */
            atomic_store_explicit(&dead->tag, ready, memory_order_release);
            atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
            *out = dead;
            return 0;
        }
        if (free_idx == UINT64_MAX)
            return CAIRN_ETABLE_FULL; /* every slot is taken or dead */
        cairn__stream_t *s = &t->slots[free_idx];
        char *copy = malloc(len);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, name, len);
        uint64_t was = atomic_load_explicit(&s->tag, memory_order_relaxed);
        /* Lookups skip INIT, so nobody reads the fields we now fill. */
        atomic_store_explicit(&s->tag, CAIRN__TAG_INIT, memory_order_relaxed);
        if (was == CAIRN__TAG_TOMB)
            t->tombs--;
        s->name = copy;
        s->name_len = (uint8_t)len;
        reset_slot(s);
        if (t->rederive && bloom_has(t, ready)) {
            uint64_t version = 0;
            int rc = t->rederive(t->policy_ctx, s, &version);
            if (rc < 0) {
                free(copy);
                s->name = NULL;
                atomic_store_explicit(&s->tag, was, memory_order_relaxed);
                if (was == CAIRN__TAG_TOMB)
                    t->tombs++;
                return rc;
            }
            atomic_store_explicit(&s->state, version, memory_order_relaxed);
        }
        atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
        /* Release: the name and the initial state are visible to any
         * thread that acquires the ready tag. */
        atomic_store_explicit(&s->tag, ready, memory_order_release);
        *out = s;
        return 0;
    }
}

int cairn__table_find(cairn_table_t *t, const char *name, size_t len,
                      int create, cairn__stream_t **out)
{
    const uint64_t ready = READY_TAG(table_hash(t, name, len));
    cairn__stream_t *s;
    int rc = 0;
    if (t->enhanced) {
        if ((s = lookup(t, ready, name, len)) != NULL) {
            *out = s;
            return 0;
        }
        if (!create)
            return CAIRN_ENOT_FOUND;
    }
    pthread_mutex_lock(&t->lock);
    if (!t->enhanced && (s = lookup(t, ready, name, len)) != NULL)
        *out = s;
    else if (!create)
        rc = CAIRN_ENOT_FOUND;
    else
        rc = insert_locked(t, ready, name, len, out);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int cairn_table_state(cairn_table_t *t, const char *name, size_t len,
                      uint64_t *state)
{
    CAIRN__TABLE_SECTION(t);
    cairn__stream_t *s;
    int rc = cairn__table_find(t, name, len, 0, &s);
    if (rc < 0)
        return rc;
    *state = atomic_load_explicit(&s->state, memory_order_relaxed);
    return 0;
}

uint64_t cairn__table_max_probe(cairn_table_t *t)
{
    uint64_t worst = 0;
    for (uint64_t i = 0; i <= t->mask; i++) {
        uint64_t tag =
            atomic_load_explicit(&t->slots[i].tag, memory_order_acquire);
        if (!IS_READY(tag))
            continue;
        uint64_t d = (i - HOME(t, tag)) & t->mask;
        if (d + 1 > worst)
            worst = d + 1;
    }
    return worst;
}
