/*
 * store.c — the durable log: segment files, the writer thread with group
 * commit, crash recovery, reads from disk, retention and compression.
 *
 * DESIGN
 *
 * Writer.  One thread consumes the ring.  It walks committed records from
 * the ring's drain point, encodes each into its disk form (segment.h) in a
 * write buffer, writes the buffer with one pwrite at the end of the active
 * segment, publishes written_seq, and only then releases the ring space
 * (cairn__ring_release_to): a record leaves memory only once it is in the
 * file.  When an appender waits for `sync` (sync_wanted > durable_seq), or
 * sync_interval_ms has passed with unsynced data, it calls fdatasync once
 * for everything written so far and publishes durable_seq: one fsync
 * covers every record written since the last, however many appenders
 * wait (group commit).  Appenders waiting for `os` or `sync` sleep on a
 * condition variable and are woken together after each write and each
 * sync; nothing spins.
 *
 * Failure.  A failed write or fdatasync (EIO, ENOSPC, EDQUOT, ...) is
 * never retried and never assumed to have worked (fsyncgate): the store
 * records the errno, turns read-only, wakes every waiter with
 * CAIRN_EREAD_ONLY, and the log refuses further appends.  Reads go on.
 *
 * Segments.  The active segment is preallocated to segment_bytes
 * (fallocate) and written with pwrite; when the next record would not
 * fit, it is synced, truncated to its data and sealed, and a new segment
 * is created (header written and synced, directory fsync'd).  Sealed
 * segments may be compressed by a background thread (zstd, whole file,
 * then rename and directory fsync), and retention deletes whole sealed
 * segments, oldest first, by total bytes and by age.
 *
 * Recovery.  Every segment is scanned in order with its CRCs and seq
 * continuity.  In the last segment the first bad record is a torn tail:
 * the file is truncated there (and the space after it discarded, so no
 * stale record can reappear later).  Damage inside a sealed segment is
 * corruption: open fails naming the file and offset, unless
 * recovery_truncate, which cuts the log at that point.
 *
 * Reads.  A cursor maps the segment it reads (sealed compressed segments
 * are decompressed once and shared) and re-checks every record's CRC
 * before returning it, so a flipped bit is reported, never served.  Each
 * segment keeps a sparse index, one entry per 64 records, of (seq, offset,
 * running maximum of event time) used to start reads at a seq or a time.
 * Readers hold a reference on the segment, so retention can unlink a file
 * under a reader without pulling its memory away.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "cairn/metrics.h"
#include "internal/clock.h"
#include "log/record.h"
#include "storage/segment.h"
#include "storage/store.h"

#define INDEX_EVERY 64u
#define WBUF_MIN (UINT64_C(4) << 20)

typedef struct idx_entry {
    uint64_t seq;
    uint64_t off;
    int64_t max_time; /* running maximum of event time up to this record */
} idx_entry_t;

typedef struct seg {
    uint64_t first_seq;
    uint64_t end_seq;  /* next seq after the last record */
    uint64_t size;     /* bytes of header + records */
    int64_t max_time;  /* running maximum of event time at the end */
    int64_t last_time; /* time of the newest record (retention by age) */
    int compressed;
    int sealed;
    char path[512];
    idx_entry_t *idx;
    size_t nidx, cap_idx;
    uint8_t *shared; /* decompressed bytes of a compressed segment */
    size_t shared_len;
    int refs; /* under store->mu */
} seg_t;

struct cairn__store {
    cairn_log_opts_t o;
    char dir[400];
    int dir_fd;
    int lock_fd;
    pthread_mutex_t mu;        /* segs, their sizes and indexes, waiters */
    pthread_cond_t written_cv; /* writer -> waiting appenders */
    pthread_cond_t writer_cv;  /* appenders -> idle writer */
    seg_t **segs;
    size_t nsegs, cap_segs;
    int active_fd;
    _Atomic uint64_t written_seq;
    _Atomic uint64_t durable_seq;
    _Atomic uint64_t sync_wanted;
    _Atomic int failed; /* 0 or -errno of the first failure */
    _Atomic int stop;
    int writer_idle;
    _Atomic uint64_t fsyncs;
    uint64_t truncated_bytes;
    cairn__ring_t *ring;
    uint64_t start_pos, start_seq;
    cairn__release_fn release;
    void *release_ctx;
    void (*on_fail)(void *ctx);
    void *on_fail_ctx;
    pthread_t writer;
    int writer_started;
    /* compression of sealed segments */
    pthread_t compactor;
    int compactor_started;
    pthread_cond_t compact_cv;
    uint64_t compact_next; /* first_seq of a segment waiting, or 0 */
    uint8_t *wbuf;
    size_t wbuf_cap;
    int in_batch; /* writer: the last record written has BATCH_MORE */
    struct cairn_metrics_histogram *fsync_hist;
};

void cairn__store_set_fsync_histogram(cairn__store_t *s,
                                      struct cairn_metrics_histogram *h)
{
    s->fsync_hist = h;
}

/* ---- the I/O seam ------------------------------------------------------ */

static ssize_t libc_pwrite(int fd, const void *b, size_t n, off_t off)
{
    return pwrite(fd, b, n, off);
}
static int libc_fdatasync(int fd)
{
    return fdatasync(fd);
}
static const cairn__io_t libc_io = {libc_pwrite, libc_fdatasync};
static const cairn__io_t *_Atomic io_ops = &libc_io;

void cairn__store_set_io(const cairn__io_t *io)
{
    atomic_store(&io_ops, io ? io : &libc_io);
}

static int write_all(int fd, const uint8_t *b, size_t n, uint64_t off)
{
    const cairn__io_t *io = atomic_load(&io_ops);
    while (n) {
        ssize_t w = io->pwrite(fd, b, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int do_fdatasync(int fd)
{
    return atomic_load(&io_ops)->fdatasync(fd) < 0 ? -errno : 0;
}

/* The writer's fdatasync, timed into the store's histogram. */
static int timed_fdatasync(cairn__store_t *s, int fd)
{
    uint64_t t0 = cairn__mono_ns();
    int rc = do_fdatasync(fd);
    if (s->fsync_hist)
        cairn_metrics_histogram_observe(s->fsync_hist,
                                        (double)(cairn__mono_ns() - t0) / 1e9);
    return rc;
}

static void set_err(char *err, size_t len, const char *fmt, ...)
{
    if (!err || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

/* ---- segment list ------------------------------------------------------ */

static seg_t *seg_new(cairn__store_t *s, uint64_t first_seq, int compressed)
{
    seg_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->first_seq = g->end_seq = first_seq;
    g->compressed = compressed;
    g->refs = 1; /* the list's reference */
    if (cairn__seg_path(g->path, sizeof g->path, s->dir, first_seq,
                        compressed) < 0) {
        free(g);
        return NULL;
    }
    return g;
}

static void seg_unref_locked(seg_t *g)
{
    if (--g->refs == 0) {
        free(g->idx);
        free(g->shared);
        free(g);
    }
}

static int segs_push(cairn__store_t *s, seg_t *g)
{
    if (s->nsegs == s->cap_segs) {
        size_t cap = s->cap_segs ? 2 * s->cap_segs : 16;
        seg_t **n = realloc(s->segs, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        s->segs = n;
        s->cap_segs = cap;
    }
    s->segs[s->nsegs++] = g;
    return 0;
}

static int idx_add(seg_t *g, uint64_t seq, uint64_t off, int64_t max_time)
{
    if (g->nidx == g->cap_idx) {
        size_t cap = g->cap_idx ? 2 * g->cap_idx : 64;
        idx_entry_t *n = realloc(g->idx, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        g->idx = n;
        g->cap_idx = cap;
    }
    g->idx[g->nidx++] = (idx_entry_t){seq, off, max_time};
    return 0;
}

static int fsync_dir(cairn__store_t *s)
{
    return fsync(s->dir_fd) < 0 ? -errno : 0;
}

/* ---- recovery ---------------------------------------------------------- */

typedef struct scan_state {
    cairn__recover_fn fn;
    void *ctx;
    uint64_t next_seq; /* 0: take the first record's */
    int64_t max_time;
    /* Records of an append batch whose last record has not been seen:
     * they are handed to fn only once the batch is complete, so a batch
     * torn by a crash is dropped whole. */
    cairn_event_t *pend;
    size_t npend, cap_pend;
} scan_state_t;

/*
 * Scan one loaded segment: index it and call fn for each record of each
 * complete batch.  *end is the offset where complete data ends; *bad says
 * scanning stopped at a damaged record, *torn that a batch was left
 * incomplete at the end (dropped, and *end is where it started).
 * Returns 0 or a negative code from fn or allocation.
 */
static int scan_segment(seg_t *g, const uint8_t *data, size_t len,
                        scan_state_t *st, uint64_t *end, int *bad, int *torn)
{
    size_t off = CAIRN__SEG_HDR, batch_off = off;
    uint64_t batch_seq = st->next_seq;
    uint32_t n = 0;
    *bad = 0;
    *torn = 0;
    g->size = off;
    for (;;) {
        cairn_event_t ev;
        long r = cairn__seg_record(data, len, off, st->next_seq, &ev);
        if (r == 0)
            break;
        if (r < 0) {
            *bad = 1;
            break;
        }
        const cairn__rec_hdr_t *h = (const cairn__rec_hdr_t *)(data + off);
        if (st->npend == 0) {
            batch_off = off;
            batch_seq = ev.seq;
        }
        if (st->npend == st->cap_pend) {
            size_t cap = st->cap_pend ? 2 * st->cap_pend : 64;
            cairn_event_t *p = realloc(st->pend, cap * sizeof *p);
            if (!p)
                return -ENOMEM;
            st->pend = p;
            st->cap_pend = cap;
        }
        st->pend[st->npend++] = ev;
        if (ev.time_ns > st->max_time)
            st->max_time = ev.time_ns;
        if (n++ % INDEX_EVERY == 0 && idx_add(g, ev.seq, off, st->max_time) < 0)
            return -ENOMEM;
        st->next_seq = ev.seq + 1;
        off += (size_t)r;
        if (h->flags & CAIRN__REC_BATCH_MORE)
            continue;
        for (size_t i = 0; i < st->npend && st->fn; i++) {
            int rc = st->fn(st->ctx, &st->pend[i]);
            if (rc < 0)
                return rc;
        }
        st->npend = 0;
        g->end_seq = ev.seq + 1;
        g->last_time = ev.time_ns;
        g->max_time = st->max_time;
        g->size = off;
    }
    if (st->npend) {
        /* A batch cut short: drop it and the index entries into it. */
        *torn = 1;
        st->npend = 0;
        st->next_seq = batch_seq;
        off = batch_off;
        while (g->nidx && g->idx[g->nidx - 1].off >= off)
            g->nidx--;
    }
    *end = off;
    return 0;
}

static int cmp_seq(const void *a, const void *b)
{
    const seg_t *x = *(seg_t *const *)a, *y = *(seg_t *const *)b;
    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

static int list_segments(cairn__store_t *s)
{
    DIR *d = opendir(s->dir);
    if (!d)
        return -errno;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        uint64_t seq;
        int comp;
        if (!cairn__seg_name(de->d_name, &seq, &comp))
            continue;
        seg_t *g = seg_new(s, seq, comp);
        if (!g || segs_push(s, g) < 0) {
            free(g);
            rc = -ENOMEM;
            break;
        }
    }
    closedir(d);
    if (rc == 0 && s->nsegs)
        qsort(s->segs, s->nsegs, sizeof *s->segs, cmp_seq);
    return rc;
}

/* Drop segments [from, nsegs) from disk and the list. */
static void drop_segments_from(cairn__store_t *s, size_t from)
{
    while (s->nsegs > from) {
        seg_t *g = s->segs[--s->nsegs];
        unlink(g->path);
        seg_unref_locked(g);
    }
    fsync_dir(s);
}

static int preallocate(int fd, uint64_t size)
{
    if (fallocate(fd, 0, 0, (off_t)size) == 0)
        return 0;
    if (errno == EOPNOTSUPP || errno == ENOSYS)
        return ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
    return -errno;
}

static int recover_scan(cairn__store_t *s, scan_state_t *st, uint64_t *next_seq,
                        char *err, size_t errlen)
{
    int rc = list_segments(s);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < s->nsegs; i++) {
        seg_t *g = s->segs[i];
        const int last = i + 1 == s->nsegs;
        uint8_t *data;
        size_t len;
        int owned;
        rc = cairn__seg_load(g->path, g->compressed, &data, &len, &owned);
        if (rc < 0 && !(last && rc == CAIRN_ECORRUPT)) {
            set_err(err, errlen, "%s: cannot load segment: %s", g->path,
                    cairn_strerror(rc));
            return rc;
        }
        uint64_t hdr_seq = 0;
        int hrc = rc < 0 ? rc : cairn__seg_header_check(data, len, &hdr_seq);
        if (hrc == 0 && hdr_seq != g->first_seq)
            hrc = CAIRN_ECORRUPT;
        if (hrc == 0 && st->next_seq && hdr_seq != st->next_seq)
            hrc = CAIRN_ECORRUPT; /* a gap between segments */
        if (hrc < 0) {
            if (rc == 0)
                cairn__seg_unload(data, len, owned);
            if (last && !g->compressed && hrc == CAIRN_ECORRUPT &&
                (st->next_seq == 0 || g->first_seq == st->next_seq)) {
                /* Torn creation: the header never reached the disk. */
                drop_segments_from(s, i);
                break;
            }
            if (s->o.recovery_truncate && hrc == CAIRN_ECORRUPT) {
                drop_segments_from(s, i);
                break;
            }
            set_err(err, errlen, "%s: offset 0: bad segment header", g->path);
            return hrc;
        }
        if (st->next_seq == 0)
            st->next_seq = hdr_seq;
        uint64_t end = CAIRN__SEG_HDR;
        int bad = 0, torn = 0;
        rc = scan_segment(g, data, len, st, &end, &bad, &torn);
        cairn__seg_unload(data, len, owned);
        if (rc < 0)
            return rc;
        if ((bad || torn) && !last) {
            if (!s->o.recovery_truncate) {
                set_err(err, errlen,
                        "%s: offset %llu: damaged record in a sealed segment",
                        g->path, (unsigned long long)end);
                return CAIRN_ECORRUPT;
            }
            if (g->compressed) {
                set_err(err, errlen,
                        "%s: offset %llu: damaged record in a compressed "
                        "segment cannot be truncated",
                        g->path, (unsigned long long)end);
                return CAIRN_ECORRUPT;
            }
            drop_segments_from(s, i + 1);
        }
        if (torn && last)
            bad = 1; /* an unfinished batch is a torn tail too */
        g->sealed = !(i + 1 == s->nsegs);
        if (i + 1 == s->nsegs && !g->compressed) {
            /* The tail: cut at the end of valid data and discard what lies
             * beyond, so no stale record can resurface after the next
             * crash. */
            struct stat sb;
            if (stat(g->path, &sb) == 0 && (uint64_t)sb.st_size > end) {
                int fd = open(g->path, O_RDWR | O_CLOEXEC);
                if (fd < 0)
                    return -errno;
                uint64_t tail = (uint64_t)sb.st_size - end;
                /* Count only bytes that were not zero fill. */
                if (bad)
                    s->truncated_bytes += tail;
                if (ftruncate(fd, (off_t)end) < 0 || fsync(fd) < 0) {
                    int e = errno;
                    close(fd);
                    return -e;
                }
                close(fd);
            }
        }
    }
    if (s->nsegs)
        *next_seq = s->segs[s->nsegs - 1]->end_seq;
    return 0;
}

static int recover(cairn__store_t *s, cairn__recover_fn fn, void *ctx,
                   uint64_t *next_seq, char *err, size_t errlen)
{
    scan_state_t st = {fn, ctx, 0, INT64_MIN, NULL, 0, 0};
    int rc = recover_scan(s, &st, next_seq, err, errlen);
    free(st.pend);
    return rc;
}

/* ---- the active segment ------------------------------------------------- */

static int create_segment(cairn__store_t *s, uint64_t first_seq)
{
    seg_t *g = seg_new(s, first_seq, 0);
    if (!g)
        return -ENOMEM;
    int fd = open(g->path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        free(g);
        return -e;
    }
    uint8_t hdr[CAIRN__SEG_HDR];
    cairn__seg_header(hdr, first_seq, cairn__wall_ns());
    int rc = preallocate(fd, s->o.segment_bytes);
    if (rc == 0)
        rc = write_all(fd, hdr, sizeof hdr, 0);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (rc == 0)
        rc = fsync_dir(s);
    if (rc < 0) {
        close(fd);
        unlink(g->path);
        free(g);
        return rc;
    }
    g->size = CAIRN__SEG_HDR;
    g->max_time = s->nsegs ? s->segs[s->nsegs - 1]->max_time : INT64_MIN;
    pthread_mutex_lock(&s->mu);
    rc = segs_push(s, g);
    pthread_mutex_unlock(&s->mu);
    if (rc < 0) {
        close(fd);
        free(g);
        return rc;
    }
    s->active_fd = fd;
    return 0;
}

/* Reopen the recovered tail segment for appending. */
static int reopen_tail(cairn__store_t *s)
{
    seg_t *g = s->segs[s->nsegs - 1];
    int fd = open(g->path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (g->size < s->o.segment_bytes) {
        int rc = preallocate(fd, s->o.segment_bytes);
        if (rc < 0) {
            close(fd);
            return rc;
        }
    }
    s->active_fd = fd;
    return 0;
}

static void fail(cairn__store_t *s, int err)
{
    int expect = 0;
    atomic_compare_exchange_strong(&s->failed, &expect, err ? err : -EIO);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->written_cv);
    pthread_mutex_unlock(&s->mu);
    /* Nothing will drain the ring any more: fail producers waiting for
     * space instead of leaving them blocked. */
    if (s->on_fail)
        s->on_fail(s->on_fail_ctx);
}

/* Enforce retention on sealed segments; called by the writer after a
 * roll.  Unlinking under a reader is safe: its mapping or buffer stays. */
static void apply_retention(cairn__store_t *s)
{
    const cairn_log_opts_t *o = &s->o;
    if (!o->retention_bytes && !o->retention_age_secs)
        return;
    int64_t now = cairn__wall_ns();
    int changed = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->nsegs < 2)
            break; /* never the active segment */
        uint64_t sealed_bytes = 0;
        for (size_t i = 0; i + 1 < s->nsegs; i++)
            sealed_bytes += s->segs[i]->size;
        seg_t *old = s->segs[0];
        int too_big = o->retention_bytes && sealed_bytes > o->retention_bytes;
        int too_old =
            o->retention_age_secs &&
            now - old->last_time > (int64_t)o->retention_age_secs * 1000000000;
        if (!too_big && !too_old)
            break;
        unlink(old->path);
        memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof *s->segs);
        s->nsegs--;
        seg_unref_locked(old);
        changed = 1;
    }
    pthread_mutex_unlock(&s->mu);
    if (changed)
        fsync_dir(s);
}

static int seal_and_roll(cairn__store_t *s, uint64_t next_seq)
{
    seg_t *g = s->segs[s->nsegs - 1];
    /* Everything in the old segment becomes durable before we leave it,
     * so durable_seq never has to track two files. */
    int rc = timed_fdatasync(s, s->active_fd);
    if (rc == 0 && ftruncate(s->active_fd, (off_t)g->size) < 0)
        rc = -errno;
    if (rc == 0)
        rc = do_fdatasync(s->active_fd);
    if (rc < 0)
        return rc;
    s->fsyncs += 2;
    atomic_store(&s->durable_seq, atomic_load(&s->written_seq));
    close(s->active_fd);
    s->active_fd = -1;
    pthread_mutex_lock(&s->mu);
    g->sealed = 1;
    if (s->o.compress_sealed && !s->compact_next) {
        s->compact_next = g->first_seq;
        pthread_cond_signal(&s->compact_cv);
    }
    pthread_mutex_unlock(&s->mu);
    rc = create_segment(s, next_seq);
    if (rc < 0)
        return rc;
    apply_retention(s);
    return 0;
}

/* ---- the writer thread -------------------------------------------------- */

static int ring_committed_at(cairn__ring_t *r, uint64_t pos)
{
    cairn__rec_hdr_t *h = (cairn__rec_hdr_t *)cairn__ring_at(r, pos);
    /* Acquire pairs with the producer's release of the tag. */
    return atomic_load_explicit(&h->tag, memory_order_acquire) ==
           cairn__ring_tag(r, pos);
}

static int ensure_wbuf(cairn__store_t *s, size_t need)
{
    if (need <= s->wbuf_cap)
        return 0;
    uint8_t *n = realloc(s->wbuf, need);
    if (!n)
        return -ENOMEM;
    s->wbuf = n;
    s->wbuf_cap = need;
    return 0;
}

static void *writer_main(void *arg)
{
    cairn__store_t *s = arg;
    cairn__ring_t *r = s->ring;
    uint64_t pos = s->start_pos;
    uint64_t seq = s->start_seq;
    uint64_t last_sync = cairn__mono_ns();
    const uint64_t interval = (uint64_t)s->o.sync_interval_ms * 1000000u;

    for (;;) {
        if (atomic_load(&s->failed))
            break;
        seg_t *g = s->segs[s->nsegs - 1]; /* only this thread changes it */
        size_t n = 0;
        uint64_t p = pos, q = seq;
        uint32_t nrec = (uint32_t)((g->end_seq - g->first_seq) % INDEX_EVERY);
        int64_t max_time = g->max_time;
        int roll = 0;
        /* Index entries for this batch, published with the sizes. */
        idx_entry_t pend[64];
        size_t npend = 0;
        while (ring_committed_at(r, p)) {
            const cairn__rec_hdr_t *h =
                (const cairn__rec_hdr_t *)cairn__ring_at(r, p);
            uint32_t len = h->rec_len;
            /* Roll only between batches, so recovery sees every batch
             * whole inside one segment. */
            if (!s->in_batch && g->size + n + len > s->o.segment_bytes &&
                g->size + n > CAIRN__SEG_HDR) {
                roll = 1;
                break;
            }
            if (n + len > s->wbuf_cap) {
                if (n)
                    break; /* write what we have first */
                if (ensure_wbuf(s, len) < 0) {
                    fail(s, -ENOMEM);
                    break;
                }
            }
            if (npend == 64)
                break;
            cairn__seg_encode(s->wbuf + n, (const uint8_t *)h, len);
            s->in_batch = (h->flags & CAIRN__REC_BATCH_MORE) != 0;
            if (h->time_ns > max_time)
                max_time = h->time_ns;
            if (nrec++ % INDEX_EVERY == 0)
                pend[npend++] = (idx_entry_t){h->seq, g->size + n, max_time};
            n += len;
            p += len;
            q = h->seq + 1;
        }
        if (n) {
            int rc = write_all(s->active_fd, s->wbuf, n, g->size);
            if (rc < 0) {
                fail(s, rc);
                break;
            }
            pthread_mutex_lock(&s->mu);
            for (size_t i = 0; i < npend; i++)
                if (idx_add(g, pend[i].seq, pend[i].off, pend[i].max_time) <
                    0) {
                    pthread_mutex_unlock(&s->mu);
                    fail(s, -ENOMEM);
                    goto out;
                }
            g->size += n;
            g->end_seq = q;
            g->max_time = max_time;
            atomic_store(&s->written_seq, q);
            pthread_cond_broadcast(&s->written_cv);
            pthread_mutex_unlock(&s->mu);
            /* The records are in the file: their ring space may go. */
            s->release(s->release_ctx, p, q);
            pos = p;
            seq = q;
        }
        if (roll) {
            int rc = seal_and_roll(s, seq);
            if (rc < 0) {
                fail(s, rc);
                break;
            }
            last_sync = cairn__mono_ns();
            pthread_mutex_lock(&s->mu);
            pthread_cond_broadcast(&s->written_cv);
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        uint64_t written = atomic_load(&s->written_seq);
        uint64_t durable = atomic_load(&s->durable_seq);
        uint64_t now = cairn__mono_ns();
        if (durable < written &&
            (atomic_load(&s->sync_wanted) >= durable ||
             now - last_sync >= interval || atomic_load(&s->stop))) {
            int rc = timed_fdatasync(s, s->active_fd);
            if (rc < 0) {
                fail(s, rc);
                break;
            }
            s->fsyncs++;
            last_sync = now;
            pthread_mutex_lock(&s->mu);
            atomic_store(&s->durable_seq, written);
            pthread_cond_broadcast(&s->written_cv);
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        if (n)
            continue;
        /* Idle: sleep until an os/sync appender or a starved producer
         * kicks us, or the sync interval comes due.  Appenders that only
         * need `memory` do not kick; they are picked up by this timeout. */
        pthread_mutex_lock(&s->mu);
        if (atomic_load(&s->stop) && !ring_committed_at(r, pos)) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        if (!ring_committed_at(r, pos) &&
            atomic_load(&s->sync_wanted) < atomic_load(&s->written_seq)) {
            uint64_t wait = durable < written ? interval : 5000000u;
            if (wait > 5000000u)
                wait = 5000000u;
            uint64_t until = now + wait;
            struct timespec ts = {(time_t)(until / 1000000000u),
                                  (long)(until % 1000000000u)};
            s->writer_idle = 1;
            pthread_cond_timedwait(&s->writer_cv, &s->mu, &ts);
            s->writer_idle = 0;
        }
        pthread_mutex_unlock(&s->mu);
    }
out:
    return NULL;
}

void cairn__store_kick(void *arg)
{
    cairn__store_t *s = arg;
    pthread_mutex_lock(&s->mu);
    if (s->writer_idle)
        pthread_cond_signal(&s->writer_cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- compaction (zstd of sealed segments) -------------------------------- */

static int compress_segment(cairn__store_t *s, seg_t *g)
{
    uint8_t *data;
    size_t len;
    int owned;
    int rc = cairn__seg_load(g->path, 0, &data, &len, &owned);
    if (rc < 0)
        return rc;
    size_t cap = ZSTD_compressBound(len);
    uint8_t *out = malloc(cap);
    if (!out) {
        cairn__seg_unload(data, len, owned);
        return -ENOMEM;
    }
    size_t clen = ZSTD_compress(out, cap, data, len, 3);
    cairn__seg_unload(data, len, owned);
    if (ZSTD_isError(clen)) {
        free(out);
        return -EIO;
    }
    char zpath[512], tmp[530];
    cairn__seg_path(zpath, sizeof zpath, s->dir, g->first_seq, 1);
    snprintf(tmp, sizeof tmp, "%s.tmp", zpath);
    int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(out);
        return -errno;
    }
    rc = write_all(fd, out, clen, 0);
    free(out);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, zpath) < 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    fsync_dir(s);
    /* Swap the list entry: readers holding the old one keep their own
     * mapping; new readers find the compressed file. */
    pthread_mutex_lock(&s->mu);
    int swapped = 0;
    for (size_t i = 0; i < s->nsegs; i++) {
        if (s->segs[i] != g)
            continue;
        seg_t *z = seg_new(s, g->first_seq, 1);
        if (!z)
            break;
        z->end_seq = g->end_seq;
        z->size = g->size;
        z->max_time = g->max_time;
        z->last_time = g->last_time;
        z->sealed = 1;
        z->idx = malloc(g->nidx * sizeof *z->idx + 1);
        if (!z->idx) {
            free(z);
            break;
        }
        memcpy(z->idx, g->idx, g->nidx * sizeof *z->idx);
        z->nidx = z->cap_idx = g->nidx;
        s->segs[i] = z;
        swapped = 1;
        break;
    }
    pthread_mutex_unlock(&s->mu);
    if (swapped) {
        unlink(g->path);
        fsync_dir(s);
        pthread_mutex_lock(&s->mu);
        seg_unref_locked(g);
        pthread_mutex_unlock(&s->mu);
    } else {
        unlink(zpath); /* retention removed it meanwhile, or no memory */
    }
    return 0;
}

static void *compactor_main(void *arg)
{
    cairn__store_t *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->compact_next && !atomic_load(&s->stop))
            pthread_cond_wait(&s->compact_cv, &s->mu);
        if (atomic_load(&s->stop))
            break;
        /* Compress every sealed, uncompressed segment, oldest first. */
        s->compact_next = 0;
        for (;;) {
            seg_t *g = NULL;
            for (size_t i = 0; i + 1 < s->nsegs; i++)
                if (s->segs[i]->sealed && !s->segs[i]->compressed) {
                    g = s->segs[i];
                    break;
                }
            if (!g || atomic_load(&s->stop))
                break;
            g->refs++;
            pthread_mutex_unlock(&s->mu);
            compress_segment(s, g);
            pthread_mutex_lock(&s->mu);
            seg_unref_locked(g);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- open / close -------------------------------------------------------- */

int cairn__store_open(const cairn_log_opts_t *o, cairn__recover_fn fn,
                      void *ctx, uint64_t *next_seq, cairn__store_t **out,
                      char *err, size_t errlen)
{
    cairn__store_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->o = *o;
    s->active_fd = s->dir_fd = s->lock_fd = -1;
    int rc;
    if (snprintf(s->dir, sizeof s->dir, "%s", o->data_dir) >=
        (int)sizeof s->dir) {
        free(s);
        return -ENAMETOOLONG;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->written_cv, &ca);
    pthread_cond_init(&s->writer_cv, &ca);
    pthread_cond_init(&s->compact_cv, &ca);
    pthread_condattr_destroy(&ca);

    if (mkdir(s->dir, 0755) < 0 && errno != EEXIST) {
        rc = -errno;
        set_err(err, errlen, "%s: cannot create: %s", s->dir, strerror(errno));
        goto fail;
    }
    s->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dir_fd < 0) {
        rc = -errno;
        set_err(err, errlen, "%s: cannot open: %s", s->dir, strerror(errno));
        goto fail;
    }
    char lock[512];
    snprintf(lock, sizeof lock, "%s/LOCK", s->dir);
    s->lock_fd = open(lock, O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = s->lock_fd < 0 ? -errno : CAIRN_ELOCKED;
        set_err(err, errlen, "%s: %s", lock,
                rc == CAIRN_ELOCKED ? "held by another process"
                                    : strerror(errno));
        goto fail;
    }
    uint64_t next = o->first_seq;
    rc = recover(s, fn, ctx, &next, err, errlen);
    if (rc < 0)
        goto fail;
    if (s->nsegs && !s->segs[s->nsegs - 1]->compressed)
        rc = reopen_tail(s);
    else
        rc = create_segment(s, next);
    if (rc < 0) {
        set_err(err, errlen, "%s: cannot open the active segment: %s", s->dir,
                cairn_strerror(rc));
        goto fail;
    }
    atomic_init(&s->written_seq, next);
    atomic_init(&s->durable_seq, next);
    atomic_init(&s->sync_wanted, 0);
    if ((rc = ensure_wbuf(s, WBUF_MIN)) < 0)
        goto fail;
    *next_seq = next;
    *out = s;
    return 0;
fail:
    cairn__store_close(s);
    return rc;
}

int cairn__store_start(cairn__store_t *s, cairn__ring_t *r, uint64_t pos,
                       uint64_t seq, cairn__release_fn release,
                       void (*on_fail)(void *ctx), void *ctx)
{
    s->on_fail = on_fail;
    s->on_fail_ctx = ctx;
    s->ring = r;
    s->start_pos = pos;
    s->start_seq = seq;
    s->release = release;
    s->release_ctx = ctx;
    cairn__ring_on_starved(r, cairn__store_kick, s);
    int rc = pthread_create(&s->writer, NULL, writer_main, s);
    if (rc)
        return -rc;
    s->writer_started = 1;
    if (s->o.compress_sealed) {
        rc = pthread_create(&s->compactor, NULL, compactor_main, s);
        if (rc)
            return -rc;
        s->compactor_started = 1;
        /* Segments sealed before a restart are compressed too. */
        pthread_mutex_lock(&s->mu);
        s->compact_next = 1;
        pthread_cond_signal(&s->compact_cv);
        pthread_mutex_unlock(&s->mu);
    }
    return 0;
}

void cairn__store_close(cairn__store_t *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->writer_cv);
    pthread_cond_broadcast(&s->compact_cv);
    pthread_mutex_unlock(&s->mu);
    if (s->writer_started)
        pthread_join(s->writer, NULL);
    if (s->compactor_started)
        pthread_join(s->compactor, NULL);
    if (s->active_fd >= 0) {
        /* A clean close leaves the active segment exactly as long as its
         * data (recovery preallocates it again). */
        if (!atomic_load(&s->failed) && s->nsegs &&
            ftruncate(s->active_fd, (off_t)s->segs[s->nsegs - 1]->size) == 0)
            do_fdatasync(s->active_fd);
        close(s->active_fd);
    }
    for (size_t i = 0; i < s->nsegs; i++)
        seg_unref_locked(s->segs[i]);
    free(s->segs);
    free(s->wbuf);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->written_cv);
    pthread_cond_destroy(&s->writer_cv);
    pthread_cond_destroy(&s->compact_cv);
    free(s);
}

int cairn__store_failed(const cairn__store_t *s)
{
    return atomic_load(&((cairn__store_t *)s)->failed) ? CAIRN_EREAD_ONLY : 0;
}

int cairn__store_wait(cairn__store_t *s, uint64_t last_seq,
                      cairn_durability_t d)
{
    _Atomic uint64_t *mark =
        d == CAIRN_DURABILITY_SYNC ? &s->durable_seq : &s->written_seq;
    if (atomic_load(mark) > last_seq)
        return 0;
    if (d == CAIRN_DURABILITY_SYNC) {
        uint64_t cur = atomic_load(&s->sync_wanted);
        while (cur < last_seq &&
               !atomic_compare_exchange_weak(&s->sync_wanted, &cur, last_seq))
            ;
    }
    pthread_mutex_lock(&s->mu);
    if (s->writer_idle)
        pthread_cond_signal(&s->writer_cv);
    while (atomic_load(mark) <= last_seq && !atomic_load(&s->failed))
        pthread_cond_wait(&s->written_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return atomic_load(mark) > last_seq ? 0 : CAIRN_EREAD_ONLY;
}

int cairn__store_sync(cairn__store_t *s, uint64_t upto_seq)
{
    if (upto_seq == 0)
        return cairn__store_failed(s);
    return cairn__store_wait(s, upto_seq, CAIRN_DURABILITY_SYNC);
}

void cairn__store_health(cairn__store_t *s, cairn_log_health_t *h)
{
    int f = atomic_load(&s->failed);
    h->read_only = f != 0;
    h->error = f;
    h->written_seq = atomic_load(&s->written_seq);
    h->durable_seq = atomic_load(&s->durable_seq);
    pthread_mutex_lock(&s->mu);
    h->segments = (uint32_t)s->nsegs;
    h->disk_bytes = 0;
    for (size_t i = 0; i < s->nsegs; i++)
        h->disk_bytes += s->segs[i]->size;
    h->first_seq = s->nsegs ? s->segs[0]->first_seq : h->written_seq;
    h->fsyncs = s->fsyncs;
    h->truncated_bytes = s->truncated_bytes;
    pthread_mutex_unlock(&s->mu);
}

uint64_t cairn__store_first_seq(cairn__store_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t f =
        s->nsegs ? s->segs[0]->first_seq : atomic_load(&s->written_seq);
    pthread_mutex_unlock(&s->mu);
    return f;
}

/* ---- cursors ------------------------------------------------------------- */

struct cairn__seg_cursor {
    cairn__store_t *s;
    seg_t *g; /* referenced segment, or NULL */
    const uint8_t *data;
    size_t data_len; /* bytes mapped / available */
    int mapped;      /* data is our own mmap */
    uint64_t off;    /* next record offset in g */
    uint64_t next_seq;
};

static void cursor_drop(cairn__seg_cursor_t *c)
{
    if (c->mapped && c->data)
        munmap((void *)c->data, c->data_len);
    c->data = NULL;
    c->data_len = 0;
    c->mapped = 0;
    if (c->g) {
        pthread_mutex_lock(&c->s->mu);
        seg_unref_locked(c->g);
        pthread_mutex_unlock(&c->s->mu);
        c->g = NULL;
    }
}

/* Make at least `need` bytes of the current segment readable. */
static int cursor_map(cairn__seg_cursor_t *c, uint64_t need)
{
    seg_t *g = c->g;
    if (c->data && c->data_len >= need)
        return 0;
    if (g->compressed) {
        pthread_mutex_lock(&c->s->mu);
        if (!g->shared) {
            uint8_t *data;
            size_t len;
            int owned;
            int rc = cairn__seg_load(g->path, 1, &data, &len, &owned);
            if (rc < 0) {
                pthread_mutex_unlock(&c->s->mu);
                return rc == -ENOENT ? CAIRN_EEXPIRED : rc;
            }
            g->shared = data;
            g->shared_len = len;
        }
        c->data = g->shared;
        c->data_len = g->shared_len;
        pthread_mutex_unlock(&c->s->mu);
        return 0;
    }
    if (c->mapped && c->data)
        munmap((void *)c->data, c->data_len);
    c->data = NULL;
    c->mapped = 0;
    int fd = open(g->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? CAIRN_EEXPIRED : -errno;
    struct stat st;
    size_t len = (size_t)need;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > len)
        len = (size_t)st.st_size;
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED)
        return -e;
    c->data = m;
    c->data_len = len;
    c->mapped = 1;
    return 0;
}

/* Position the cursor at segment i and the first record >= seq (or whose
 * running max time reaches from_time).  Called with s->mu held. */
static void cursor_place_locked(cairn__seg_cursor_t *c, size_t i, uint64_t seq,
                                int64_t from_time)
{
    seg_t *g = c->s->segs[i];
    g->refs++;
    c->g = g;
    c->off = CAIRN__SEG_HDR;
    c->next_seq = g->first_seq;
    size_t lo = 0, hi = g->nidx;
    while (lo < hi) { /* last entry before the target */
        size_t mid = (lo + hi) / 2;
        int before = from_time ? g->idx[mid].max_time < from_time
                               : g->idx[mid].seq <= seq;
        if (before)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0) {
        c->off = g->idx[lo - 1].off;
        c->next_seq = g->idx[lo - 1].seq;
    }
}

int cairn__store_cursor_open(cairn__store_t *s, uint64_t from_seq,
                             int64_t from_time_ns, cairn__seg_cursor_t **out)
{
    cairn__seg_cursor_t *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->s = s;
    pthread_mutex_lock(&s->mu);
    if (!s->nsegs || (from_seq && from_seq < s->segs[0]->first_seq)) {
        pthread_mutex_unlock(&s->mu);
        free(c);
        return CAIRN_EEXPIRED;
    }
    size_t i = 0;
    if (from_seq) {
        while (i + 1 < s->nsegs && s->segs[i + 1]->first_seq <= from_seq)
            i++;
    } else if (from_time_ns) {
        while (i + 1 < s->nsegs && s->segs[i]->max_time < from_time_ns)
            i++;
    }
    cursor_place_locked(c, i, from_seq, from_seq ? 0 : from_time_ns);
    pthread_mutex_unlock(&s->mu);
    /* Skip to from_seq within the segment. */
    cairn_event_t ev;
    while (from_seq && c->next_seq < from_seq) {
        int rc = cairn__store_cursor_next(c, &ev);
        if (rc <= 0) {
            if (rc < 0) {
                cairn__store_cursor_close(c);
                return rc;
            }
            break;
        }
    }
    *out = c;
    return 0;
}

int cairn__store_cursor_next(cairn__seg_cursor_t *c, cairn_event_t *ev)
{
    cairn__store_t *s = c->s;
    for (;;) {
        if (!c->g)
            return CAIRN_EEXPIRED;
        pthread_mutex_lock(&s->mu);
        uint64_t size = c->g->size;
        int sealed = c->g->sealed;
        pthread_mutex_unlock(&s->mu);
        if (c->off < size) {
            int rc = cursor_map(c, size);
            if (rc < 0)
                return rc;
            long r = cairn__seg_record(c->data, (size_t)size, c->off,
                                       c->next_seq, ev);
            if (r <= 0)
                return CAIRN_ECORRUPT;
            c->off += (uint64_t)r;
            c->next_seq = ev->seq + 1;
            return 1;
        }
        if (!sealed)
            return 0;
        /* Move to the segment that starts at next_seq. */
        pthread_mutex_lock(&s->mu);
        size_t i = 0;
        while (i < s->nsegs && s->segs[i]->first_seq < c->next_seq)
            i++;
        if (i == s->nsegs || s->segs[i]->first_seq != c->next_seq) {
            const int at_end = i == s->nsegs; /* read under the lock */
            pthread_mutex_unlock(&s->mu);
            if (at_end)
                return 0; /* the next segment is being created */
            return CAIRN_EEXPIRED;
        }
        seg_t *old = c->g;
        int was_mapped = c->mapped;
        const uint8_t *old_data = c->data;
        size_t old_len = c->data_len;
        c->g = NULL;
        seg_unref_locked(old);
        c->data = NULL;
        c->data_len = 0;
        c->mapped = 0;
        uint64_t want = c->next_seq;
        cursor_place_locked(c, i, want, 0);
        c->off = CAIRN__SEG_HDR;
        c->next_seq = want;
        pthread_mutex_unlock(&s->mu);
        if (was_mapped && old_data)
            munmap((void *)old_data, old_len);
    }
}

uint64_t cairn__store_cursor_seq(const cairn__seg_cursor_t *c)
{
    return c->next_seq;
}

void cairn__store_cursor_close(cairn__seg_cursor_t *c)
{
    if (!c)
        return;
    cursor_drop(c);
    free(c);
}
