/* table.h (internal) — the stream table's slot layout, shared by the log. */
#ifndef CAIRN_INTERNAL_TABLE_H
#define CAIRN_INTERNAL_TABLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <sodium.h>

#include "cairn/table.h"

/* Slot tags: 0 empty; CAIRN__TAG_INIT while the inserting thread fills the
 * slot; (siphash | 1) once ready.  Ready tags are odd, INIT is even. */
#define CAIRN__TAG_EMPTY UINT64_C(0)
#define CAIRN__TAG_INIT UINT64_C(2)

/*
 * One stream: exactly one cache line.  tag, state and aux are the stream's
 * key and its 16 bytes of packed atomic state (include/cairn/table.h);
 * first_seq/last_seq are written by the append that holds the BUSY bit and
 * read relaxed by anyone.  name is immutable once the tag is ready.
 */
typedef struct cairn__stream {
    _Atomic uint64_t tag;
    _Atomic uint64_t state;
    _Atomic uint64_t aux;
    _Atomic uint64_t first_seq;
    _Atomic uint64_t last_seq;
    char *name;
    uint8_t name_len;
    uint8_t pad_[64 - 5 * 8 - sizeof(char *) - 1];
} __attribute__((aligned(64))) cairn__stream_t;

_Static_assert(sizeof(cairn__stream_t) == 64, "a stream is one cache line");

struct cairn_table {
    cairn__stream_t *slots;
    uint64_t mask;
    uint32_t max;
    int enhanced;
    _Atomic uint32_t count;
    pthread_mutex_t lock; /* the twin's lock; unused when enhanced */
    unsigned char key[crypto_shorthash_KEYBYTES];
};

/*
 * Find a stream; with create, insert it when missing.  The name must
 * already be validated.  Returns 0 and *out (valid until the table is
 * closed), CAIRN_ENOT_FOUND (create == 0), CAIRN_ETABLE_FULL, -ENOMEM.
 */
int cairn__table_find(cairn_table_t *t, const char *name, size_t len,
                      int create, cairn__stream_t **out);

#endif
