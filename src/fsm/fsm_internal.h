/*
 * fsm_internal.h — the definition's memory layout, shared by def.c (which
 * builds it) and machine.c (which reads it on every fire).
 */
#ifndef CAIRN_FSM_INTERNAL_H
#define CAIRN_FSM_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "cairn/fsm.h"

/* A table entry with no transition. */
#define CAIRN__FSM_NONE 0xFFFFu

/* Hash slots per name index: twice the most names, so the load factor of
 * a full index is 0.5 and a lookup probes a short run. */
#define CAIRN__FSM_SLOTS 512u

/*
 * Names (states or triggers) numbered 0..count-1, with an open-addressed
 * hash for name -> number.  Linear probing; max_probe is the longest
 * displacement any name got when the index was built, so a lookup of a
 * name that is not there stops after max_probe + 1 slots (the set of names
 * is fixed, so this bound holds for every query, hostile ones included).
 */
typedef struct cairn__fsm_names {
    uint32_t count;
    uint32_t mask;      /* slots in use - 1 (a power of two minus one) */
    uint32_t max_probe;
    uint32_t len_min, len_max;
    char *arena;        /* every name, NUL-terminated, back to back */
    uint32_t off[CAIRN_FSM_STATES_MAX];
    uint8_t len[CAIRN_FSM_STATES_MAX];
    uint16_t slot[CAIRN__FSM_SLOTS]; /* name number + 1; 0 = empty */
} cairn__fsm_names_t;

struct cairn_fsm_def {
    uint32_t nstates;
    uint32_t ntriggers;
    uint32_t ntransitions;
    /* next[state * ntriggers + trigger]: target state or CAIRN__FSM_NONE. */
    uint16_t *next;
    /* NULL, or guards in the same layout (allocated by the first guard). */
    cairn_fsm_guard_fn *guards;
    cairn__fsm_names_t states;
    cairn__fsm_names_t triggers;
};

/* A 32-bit hash of a short name, eight bytes at a time. */
static inline uint32_t cairn__fsm_hash(const char *s, size_t n)
{
    uint64_t h = UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 29;
    return (uint32_t)h;
}

/* Name -> number, or -1. */
static inline int cairn__fsm_find(const cairn__fsm_names_t *ix, const char *s,
                                  size_t n)
{
    if (n < ix->len_min || n > ix->len_max)
        return -1;
    uint32_t i = cairn__fsm_hash(s, n) & ix->mask;
    for (uint32_t p = 0; p <= ix->max_probe; p++, i = (i + 1) & ix->mask) {
        uint32_t e = ix->slot[i];
        if (e == 0)
            return -1;
        e--;
        if (ix->len[e] == n && memcmp(ix->arena + ix->off[e], s, n) == 0)
            return (int)e;
    }
    return -1;
}

#endif
