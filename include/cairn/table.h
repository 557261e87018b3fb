/*
 * table.h — the stream table: one packed atomic state per stream.
 *
 * The table is bounded (max_endpoints streams) and keyed by SipHash-2-4
 * (libsodium crypto_shorthash) under a random key drawn when the table is
 * opened, so nobody outside the process can choose names that land in one
 * bucket.  Slots are open-addressed with linear probing over 2x
 * max_endpoints slots (rounded up to a power of two); each slot is one
 * 64-byte cache line holding the key tag, the packed state and the name.
 *
 * PACKED STATE (one 64-bit word, `state`, updated only by CAS or by the
 * holder of the BUSY bit):
 *
 *   bits    field          range / behaviour
 *   0..39   version        0 .. 2^40-1; number of events in the stream, which
 *                          is also its event count; an append that would
 *                          pass the maximum fails (CAIRN_EVERSION_OVERFLOW),
 *                          it never wraps
 *   40      busy           set by the one append that owns the stream for
 *                          the instant of its ring claim (so versions follow
 *                          seq order); cleared by the same append
 *   41..43  flags          reserved (eviction, audit, tombstone)
 *   44..51  fsm_state      reserved for the bound state machine (0..255)
 *   52..53  breaker        reserved: 0 closed, 1 open, 2 half-open
 *   54..63  breaker_epoch  reserved
 *
 * A second 64-bit word, `aux`, is reserved for the throttle's theoretical
 * arrival time (GCRA, integer ns).  Together the two stay within the 16
 * bytes of atomic state per stream the design allows.
 *
 * Thread safety: all functions are safe to call concurrently.
 */
#ifndef CAIRN_TABLE_H
#define CAIRN_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "cairn/cairn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_STATE_VERSION_BITS 40
#define CAIRN_STATE_VERSION_MASK ((UINT64_C(1) << 40) - 1)
#define CAIRN_STATE_BUSY (UINT64_C(1) << 40)
#define CAIRN_STATE_FLAGS_SHIFT 41
#define CAIRN_STATE_FSM_SHIFT 44
#define CAIRN_STATE_BREAKER_SHIFT 52
#define CAIRN_STATE_EPOCH_SHIFT 54

typedef struct cairn_table cairn_table_t;

typedef struct cairn_table_opts {
    uint32_t max_endpoints; /* CAIRN_MAX_ENDPOINTS_DEFAULT / _CAP */
    int enhanced_mode;      /* 1 lock-free lookups and inserts, 0 mutex twin */
} cairn_table_opts_t;

/* Open a table.  Returns 0, CAIRN_EBAD_OPTION, -ENOMEM, or -EIO when
 * libsodium cannot initialise. */
CAIRN_EXPORT int cairn_table_open(const cairn_table_opts_t *opts,
                                  cairn_table_t **out);
/* NULL is a no-op.  No other call may be in progress. */
CAIRN_EXPORT void cairn_table_close(cairn_table_t *t);

/* Streams in the table now. */
CAIRN_EXPORT uint32_t cairn_table_count(const cairn_table_t *t);

/* The packed state word of a stream (a relaxed snapshot), or
 * CAIRN_ENOT_FOUND. */
CAIRN_EXPORT int cairn_table_state(cairn_table_t *t, const char *name,
                                   size_t len, uint64_t *state);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_TABLE_H */
