/* projection_internal.h — the snapshot store shared by projection.c and
 * snapshot.c, and the hook builtin.c uses for a state read live from the
 * stream table rather than folded. */
#ifndef CAIRN_PROJECTION_INTERNAL_H
#define CAIRN_PROJECTION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cairn/projection.h"

typedef struct cairn__snapstore cairn__snapstore_t;

/* One snapshot: the state after the stream's event (version, seq). */
typedef struct cairn__snap {
    uint64_t version;
    uint64_t seq;
    int64_t time_ns;
    uint32_t state_len;
    uint64_t off;  /* file offset of the state bytes (file store) */
    uint8_t *mem;  /* the state bytes (memory store) */
} cairn__snap_t;

/*
 * Open a store for projection `name`: dir NULL keeps snapshots in memory;
 * otherwise dir is created if missing and "<dir>/<name>.snap" is loaded
 * (records with a bad CRC end the file: it is cut there; records with
 * seq >= log_next_seq are ignored; a file more than half dead is
 * rewritten).  0, -errno, CAIRN_ECORRUPT (bad header), -ENOMEM.
 */
int cairn__snap_open(const char *dir, const char *name, uint32_t state_max,
                     uint32_t max_streams, uint64_t log_next_seq,
                     cairn__snapstore_t **out);
void cairn__snap_close(cairn__snapstore_t *ss);

/*
 * The newest snapshot of stream with version <= max_version,
 * seq <= max_seq and (max_time_ns < 0 or time <= max_time_ns): 1 with
 * *snap and the state copied into state (cap bytes), 0 when none, or
 * -errno (reading the file).
 */
int cairn__snap_best(cairn__snapstore_t *ss, const char *stream, size_t len,
                     uint64_t max_version, uint64_t max_seq,
                     int64_t max_time_ns, void *state, size_t cap,
                     cairn__snap_t *snap);

/* Whether stream has a snapshot at version. */
int cairn__snap_has(cairn__snapstore_t *ss, const char *stream, size_t len,
                    uint64_t version);

/* Store a snapshot (copied).  0, 1 when it was not kept (store full of
 * streams), -errno. */
int cairn__snap_put(cairn__snapstore_t *ss, const char *stream, size_t len,
                    uint64_t version, uint64_t seq, int64_t time_ns,
                    const void *state, uint32_t state_len);

/* Forget the stream's snapshots at version and above (they disagree with
 * the log). */
void cairn__snap_drop(cairn__snapstore_t *ss, const char *stream, size_t len,
                      uint64_t version);

/* Snapshots held now. */
uint64_t cairn__snap_count(cairn__snapstore_t *ss);

/* A state read live instead of folded (the fsm built-in without a
 * definition): fills state and info, or returns a negative code. */
typedef int (*cairn__live_fn)(void *ctx, cairn_log_t *log, const char *stream,
                              size_t len, void *state, size_t cap,
                              cairn_projection_info_t *info);

int cairn__projection_create_ex(cairn_bus_t *bus,
                                const cairn_projection_def_t *def,
                                const cairn_projection_opts_t *opts,
                                cairn__live_fn live, cairn_projection_t **out);

#endif
