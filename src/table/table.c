/*
 * table.c — the stream table (include/cairn/table.h).
 *
 * DESIGN.  Open addressing with linear probing over a power-of-two array of
 * one-cache-line slots, at most half full (2x max_endpoints slots), so
 * probe sequences stay short.  The probe start is SipHash-2-4 of the name
 * under a per-table random key, so an outsider cannot aim names at one
 * run of slots.  Slots are never removed in this version, which keeps the
 * lock-free protocol simple:
 *
 *   insert:  reserve capacity (count fetch-add, undone on failure), then
 *            CAS the tag EMPTY -> INIT, fill name and state with plain
 *            stores, and publish with a release store of the ready tag.
 *   lookup:  acquire-load the tag; INIT means an insert is in flight in
 *            this slot (perhaps of the same name), so wait for it; a ready
 *            tag equal to ours is then compared by length and
 *            sodium_memcmp over the name (constant time in the name length,
 *            so timing does not reveal how much of a name matched).
 *
 * The twin (enhanced_mode = 0) runs the same probe under one mutex.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cairn/limits.h"
#include "internal/clock.h"
#include "internal/table.h"

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
    /* Anonymous memory is zeroed and page aligned, and untouched slots
     * cost no RAM until a stream lands in them. */
    void *mem = mmap(NULL, n * sizeof(cairn__stream_t),
                     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        free(t);
        return -ENOMEM;
    }
    t->slots = mem;
    t->mask = n - 1;
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
    free(t);
}

uint32_t cairn_table_count(const cairn_table_t *t)
{
    return atomic_load_explicit(&((cairn_table_t *)t)->count,
                                memory_order_relaxed);
}

static int slot_matches(const cairn__stream_t *s, const char *name,
                        size_t len)
{
    return s->name_len == len && sodium_memcmp(s->name, name, len) == 0;
}

static int table_find_lockfree(cairn_table_t *t, const char *name,
                               size_t len, int create, cairn__stream_t **out)
{
    const uint64_t h = table_hash(t, name, len);
    const uint64_t ready = h | 1;
    uint64_t i = h & t->mask;

    for (;;) {
        cairn__stream_t *s = &t->slots[i];
        /* Acquire pairs with the inserter's release of the ready tag, so
         * name and name_len are visible once the tag is. */
        uint64_t tag = atomic_load_explicit(&s->tag, memory_order_acquire);
        if (tag == CAIRN__TAG_EMPTY) {
            if (!create)
                return CAIRN_ENOT_FOUND;
            char *copy = malloc(len);
            if (!copy)
                return -ENOMEM;
            memcpy(copy, name, len);
            /* Reserve capacity before taking a slot so max_endpoints is a
             * hard bound even with racing inserts. */
            if (atomic_fetch_add_explicit(&t->count, 1,
                                          memory_order_relaxed) >= t->max) {
                atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
                free(copy);
                return CAIRN_ETABLE_FULL;
            }
            uint64_t expect = CAIRN__TAG_EMPTY;
            if (atomic_compare_exchange_strong_explicit(
                    &s->tag, &expect, CAIRN__TAG_INIT, memory_order_acquire,
                    memory_order_acquire)) {
                s->name = copy;
                s->name_len = (uint8_t)len;
                /* Release: the name and zeroed state are visible to any
                 * thread that acquires the ready tag. */
                atomic_store_explicit(&s->tag, ready, memory_order_release);
                *out = s;
                return 0;
            }
            atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
            free(copy);
            continue; /* re-examine the same slot: someone took it */
        }
        if (tag == CAIRN__TAG_INIT) {
            /* An insert is filling this slot; it finishes in a few stores
             * unless its thread is preempted, so spin then yield. */
            for (int k = 0; k < 64 && atomic_load_explicit(
                                          &s->tag, memory_order_acquire) ==
                                          CAIRN__TAG_INIT;
                 k++)
                cairn__cpu_relax();
            if (atomic_load_explicit(&s->tag, memory_order_acquire) ==
                CAIRN__TAG_INIT)
                sched_yield();
            continue;
        }
        if (tag == ready && slot_matches(s, name, len)) {
            *out = s;
            return 0;
        }
        i = (i + 1) & t->mask;
    }
}

int cairn__table_find(cairn_table_t *t, const char *name, size_t len,
                      int create, cairn__stream_t **out)
{
    if (t->enhanced)
        return table_find_lockfree(t, name, len, create, out);
    pthread_mutex_lock(&t->lock);
    int rc = table_find_lockfree(t, name, len, create, out);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int cairn_table_state(cairn_table_t *t, const char *name, size_t len,
                      uint64_t *state)
{
    cairn__stream_t *s;
    int rc = cairn__table_find(t, name, len, 0, &s);
    if (rc < 0)
        return rc;
    *state = atomic_load_explicit(&s->state, memory_order_relaxed);
    return 0;
}
