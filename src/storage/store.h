/* store.h (internal) — durable segments under the ring; see store.c. */
#ifndef CAIRN_STORAGE_STORE_H
#define CAIRN_STORAGE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/log.h"
#include "log/ring.h"

typedef struct cairn__store cairn__store_t;
typedef struct cairn__seg_cursor cairn__seg_cursor_t;

/* Called for every record recovered, in seq order. */
typedef int (*cairn__recover_fn)(void *ctx, const cairn_event_t *ev);

/*
 * Open (creating if needed) the data directory, lock it, recover every
 * segment and call fn for each record.  *next_seq is the seq the next
 * append gets.  On corruption returns CAIRN_ECORRUPT with the file and
 * offset in err.
 */
int cairn__store_open(const cairn_log_opts_t *o, cairn__recover_fn fn,
                      void *ctx, uint64_t *next_seq, cairn__store_t **out,
                      char *err, size_t errlen);

/* Gives ring space back once the writer has consumed everything before
 * position pos (whose record has seq seq). */
typedef void (*cairn__release_fn)(void *ctx, uint64_t pos, uint64_t seq);

/* Start the writer thread consuming ring r from (pos, seq), releasing
 * through release(ctx, ...), and calling on_fail(ctx) once if a write or
 * sync fails (the log then fails producers waiting for ring space).  The
 * ring's first seq is the store's next. */
int cairn__store_start(cairn__store_t *s, cairn__ring_t *r, uint64_t pos,
                       uint64_t seq, cairn__release_fn release,
                       void (*on_fail)(void *ctx), void *ctx);

/* Wake the writer if it sleeps (producers blocked on a full ring). */
void cairn__store_kick(void *store);

/* Write and sync everything committed, stop the writer, free. */
void cairn__store_close(cairn__store_t *s);

/*
 * Wait until seqs up to last_seq are written (CAIRN_DURABILITY_OS) or
 * synced (CAIRN_DURABILITY_SYNC).  Returns 0, or CAIRN_EREAD_ONLY when the
 * log failed before they got there.
 */
int cairn__store_wait(cairn__store_t *s, uint64_t last_seq,
                      cairn_durability_t d);

/* Make everything committed so far durable now; 0 or CAIRN_EREAD_ONLY. */
int cairn__store_sync(cairn__store_t *s, uint64_t upto_seq);

/* 0, or CAIRN_EREAD_ONLY once a write or sync has failed. */
int cairn__store_failed(const cairn__store_t *s);

void cairn__store_health(cairn__store_t *s, cairn_log_health_t *h);

/* The first seq still on disk. */
uint64_t cairn__store_first_seq(cairn__store_t *s);

/*
 * Cursor over the written records.  Open at from_seq (or, when from_seq is
 * 0 and from_time_ns non-zero, at the first record whose time may be >=
 * from_time_ns; 0/0 = the oldest).  CAIRN_EEXPIRED when from_seq is older
 * than what retention kept.
 */
int cairn__store_cursor_open(cairn__store_t *s, uint64_t from_seq,
                             int64_t from_time_ns, cairn__seg_cursor_t **out);
/* 1 and *ev (valid until the next call), 0 at the written end (call again
 * later), CAIRN_ECORRUPT (a record failed its CRC: never served),
 * CAIRN_EEXPIRED (retention removed the segment under the cursor). */
int cairn__store_cursor_next(cairn__seg_cursor_t *c, cairn_event_t *ev);
/* The seq the cursor will return next. */
uint64_t cairn__store_cursor_seq(const cairn__seg_cursor_t *c);
void cairn__store_cursor_close(cairn__seg_cursor_t *c);

/* Observe every fdatasync's duration (seconds) in h (NULL: none). */
struct cairn_metrics_histogram;
void cairn__store_set_fsync_histogram(cairn__store_t *s,
                                      struct cairn_metrics_histogram *h);

/* Test-only I/O seam: the storage layer calls these for every write and
 * sync, so tests can inject EIO and ENOSPC.  NULL restores libc. */
typedef struct cairn__io {
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    int (*fdatasync)(int fd);
} cairn__io_t;
void cairn__store_set_io(const cairn__io_t *io);

#endif
