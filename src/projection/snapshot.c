/*
 * snapshot.c — projection snapshots: in memory, or in one append-only
 * checksummed file per projection (docs/PROJECTION.md, "Snapshots").
 *
 * DESIGN
 *
 * A snapshot is a projection's state after a stream's event (version,
 * seq).  The store keeps, per stream, the newest
 * CAIRN_PROJECTION_SNAPSHOTS_PER_STREAM snapshots in a chained hash map
 * keyed by SipHash (libsodium crypto_shorthash) of the stream name under a
 * random key.  Everything is under one mutex: snapshots are taken and used
 * only by derives, the cold path.
 *
 * File "<dir>/<projection>.snap", little-endian:
 *
 *   header (16 bytes)
 *     0   8  magic "CAIRNSNP"
 *     8   4  format version, 1
 *    12   4  state_max of the projection that wrote it
 *   record (repeated; rec_len bytes, a multiple of 8)
 *     0   4  CRC32C (ISA-L crc32_iscsi, seed 0) of bytes 4 .. rec_len-1
 *     4   4  rec_len
 *     8   8  version (stream version the state reflects)
 *    16   8  seq of that event
 *    24   8  time_ns of that event
 *    32   4  stream_len (1..255)
 *    36   4  state_len (<= state_max)
 *    40      stream bytes, then state bytes, then zeroes to rec_len
 *
 * Records are appended with pwrite and never synced: a snapshot is a
 * cache, and one lost in a crash only makes the next replay longer.  On
 * open, the first record that is short, has a bad CRC or impossible
 * lengths ends the file (it is truncated there).  A snapshot whose seq is
 * not below the log's next seq is ignored (the log lost a tail it
 * covered); the derive also checks every snapshot it starts from against
 * the log's back-links (projection.c).  When more than half of the file
 * is superseded records, open rewrites it (temporary file, fsync, rename,
 * directory fsync).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <isa-l.h>
#include <sodium.h>

#include "projection/projection_internal.h"

#define SNAP_MAGIC "CAIRNSNP"
#define SNAP_FORMAT 1u
#define SNAP_HDR 16u
#define SNAP_REC_HDR 40u
#define SNAP_K CAIRN_PROJECTION_SNAPSHOTS_PER_STREAM

typedef struct snap_stream {
    struct snap_stream *next;
    uint32_t n;                /* snapshots held, oldest first */
    cairn__snap_t s[SNAP_K];
    uint32_t len;
    char name[];
} snap_stream_t;

struct cairn__snapstore {
    pthread_mutex_t mu;
    int fd;                    /* -1: memory only */
    uint64_t end;              /* file size */
    uint64_t live_bytes;       /* bytes of records still held */
    uint32_t state_max;
    uint32_t max_streams;
    uint32_t nstreams;
    uint64_t nsnaps;
    size_t nbuckets;           /* power of two */
    snap_stream_t **b;
    unsigned char key[crypto_shorthash_KEYBYTES];
};

static uint64_t rec_size(size_t stream_len, size_t state_len)
{
    return (SNAP_REC_HDR + stream_len + state_len + 7) & ~(uint64_t)7;
}

static size_t bucket(const cairn__snapstore_t *ss, const char *s, size_t len)
{
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)s, len, ss->key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return (size_t)(v & (ss->nbuckets - 1));
}

static snap_stream_t *find(cairn__snapstore_t *ss, const char *s, size_t len)
{
    for (snap_stream_t *x = ss->b[bucket(ss, s, len)]; x; x = x->next)
        if (x->len == len && memcmp(x->name, s, len) == 0)
            return x;
    return NULL;
}

static int grow(cairn__snapstore_t *ss)
{
    size_t nb = ss->nbuckets * 2;
    snap_stream_t **b = calloc(nb, sizeof *b);
    if (!b)
        return -ENOMEM;
    snap_stream_t **old = ss->b;
    size_t on = ss->nbuckets;
    ss->b = b;
    ss->nbuckets = nb;
    for (size_t i = 0; i < on; i++)
        for (snap_stream_t *x = old[i], *nx; x; x = nx) {
            nx = x->next;
            size_t k = bucket(ss, x->name, x->len);
            x->next = b[k];
            b[k] = x;
        }
    free(old);
    return 0;
}

static snap_stream_t *find_or_add(cairn__snapstore_t *ss, const char *s,
                                  size_t len)
{
    snap_stream_t *x = find(ss, s, len);
    if (x || ss->nstreams >= ss->max_streams)
        return x;
    if (ss->nstreams >= ss->nbuckets * 2 && grow(ss) < 0)
        return NULL;
    if (!(x = calloc(1, sizeof *x + len)))
        return NULL;
    x->len = (uint32_t)len;
    memcpy(x->name, s, len);
    size_t k = bucket(ss, s, len);
    x->next = ss->b[k];
    ss->b[k] = x;
    ss->nstreams++;
    return x;
}

static void snap_forget(cairn__snapstore_t *ss, snap_stream_t *x, uint32_t i)
{
    free(x->s[i].mem);
    ss->live_bytes -= rec_size(x->len, x->s[i].state_len);
    ss->nsnaps--;
    memmove(&x->s[i], &x->s[i + 1], (x->n - i - 1) * sizeof x->s[0]);
    x->n--;
}

/* Add a snapshot to x in version order, dropping the oldest when full. */
static void snap_insert(cairn__snapstore_t *ss, snap_stream_t *x,
                        const cairn__snap_t *sn)
{
    uint32_t i = x->n;
    while (i > 0 && x->s[i - 1].version > sn->version)
        i--;
    if (i > 0 && x->s[i - 1].version == sn->version) {
        /* Same point again (a record written twice): keep the newer. */
        snap_forget(ss, x, i - 1);
        i--;
    }
    if (x->n == SNAP_K) {
        if (i == 0) {
            free(sn->mem);
            return; /* older than everything kept */
        }
        snap_forget(ss, x, 0);
        i--;
    }
    memmove(&x->s[i + 1], &x->s[i], (x->n - i) * sizeof x->s[0]);
    x->s[i] = *sn;
    x->n++;
    ss->nsnaps++;
    ss->live_bytes += rec_size(x->len, sn->state_len);
}

static uint32_t rec_crc(const uint8_t *rec, uint64_t len)
{
    return crc32_iscsi((unsigned char *)rec + 4, (int)(len - 4), 0);
}

/* Build one record in buf (rec_size bytes, zeroed padding). */
static void rec_build(uint8_t *buf, uint64_t size, const char *stream,
                      size_t len, uint64_t version, uint64_t seq,
                      int64_t time_ns, const void *state, uint32_t state_len)
{
    memset(buf, 0, size);
    uint32_t u32 = (uint32_t)size;
    memcpy(buf + 4, &u32, 4);
    memcpy(buf + 8, &version, 8);
    memcpy(buf + 16, &seq, 8);
    memcpy(buf + 24, &time_ns, 8);
    u32 = (uint32_t)len;
    memcpy(buf + 32, &u32, 4);
    memcpy(buf + 36, &state_len, 4);
    memcpy(buf + SNAP_REC_HDR, stream, len);
    if (state_len)
        memcpy(buf + SNAP_REC_HDR + len, state, state_len);
    u32 = rec_crc(buf, size);
    memcpy(buf, &u32, 4);
}

static int write_all(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = pwrite(fd, b, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Load every record; cut the file at the first bad one. */
static int load(cairn__snapstore_t *ss, uint64_t log_next_seq)
{
    struct stat st;
    if (fstat(ss->fd, &st) < 0)
        return -errno;
    uint64_t size = (uint64_t)st.st_size;
    uint8_t hdr[SNAP_HDR];
    if (size < SNAP_HDR) {
        memset(hdr, 0, sizeof hdr);
        memcpy(hdr, SNAP_MAGIC, 8);
        uint32_t v = SNAP_FORMAT;
        memcpy(hdr + 8, &v, 4);
        memcpy(hdr + 12, &ss->state_max, 4);
        int rc = write_all(ss->fd, hdr, sizeof hdr, 0);
        if (rc == 0 && ftruncate(ss->fd, SNAP_HDR) < 0)
            rc = -errno;
        ss->end = SNAP_HDR;
        return rc;
    }
    int rc = read_all(ss->fd, hdr, sizeof hdr, 0);
    if (rc)
        return rc;
    uint32_t fmt;
    memcpy(&fmt, hdr + 8, 4);
    if (memcmp(hdr, SNAP_MAGIC, 8) != 0)
        return CAIRN_ECORRUPT;
    if (fmt != SNAP_FORMAT)
        return CAIRN_EFORMAT_VERSION;
    uint64_t off = SNAP_HDR;
    size_t bufcap = 4096;
    uint8_t *buf = malloc(bufcap);
    if (!buf)
        return -ENOMEM;
    while (off + SNAP_REC_HDR <= size) {
        uint8_t h[SNAP_REC_HDR];
        if ((rc = read_all(ss->fd, h, sizeof h, off)))
            break;
        uint32_t rec_len, stream_len, state_len;
        memcpy(&rec_len, h + 4, 4);
        memcpy(&stream_len, h + 32, 4);
        memcpy(&state_len, h + 36, 4);
        if (stream_len == 0 || stream_len > CAIRN_STREAM_MAX ||
            state_len > ss->state_max || rec_len % 8 ||
            rec_len != rec_size(stream_len, state_len) || off + rec_len > size)
            break;
        if (rec_len > bufcap) {
            uint8_t *nb = realloc(buf, rec_len);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            bufcap = rec_len;
        }
        if ((rc = read_all(ss->fd, buf, rec_len, off)))
            break;
        uint32_t crc;
        memcpy(&crc, buf, 4);
        if (crc != rec_crc(buf, rec_len))
            break;
        cairn__snap_t sn = {0};
        memcpy(&sn.version, buf + 8, 8);
        memcpy(&sn.seq, buf + 16, 8);
        memcpy(&sn.time_ns, buf + 24, 8);
        sn.state_len = state_len;
        sn.off = off + SNAP_REC_HDR + stream_len;
        if (sn.seq < log_next_seq && sn.version > 0) {
            snap_stream_t *x =
                find_or_add(ss, (const char *)buf + SNAP_REC_HDR, stream_len);
            if (x)
                snap_insert(ss, x, &sn);
        }
        off += rec_len;
    }
    free(buf);
    if (rc)
        return rc;
    if (off < size && ftruncate(ss->fd, (off_t)off) < 0)
        return -errno;
    ss->end = off;
    return 0;
}

/* Rewrite the file with only the snapshots held (open, when mostly dead). */
static int compact(cairn__snapstore_t *ss, const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    uint8_t hdr[SNAP_HDR] = {0};
    memcpy(hdr, SNAP_MAGIC, 8);
    uint32_t v = SNAP_FORMAT;
    memcpy(hdr + 8, &v, 4);
    memcpy(hdr + 12, &ss->state_max, 4);
    int rc = write_all(fd, hdr, sizeof hdr, 0);
    uint64_t off = SNAP_HDR;
    uint8_t *state = malloc(ss->state_max ? ss->state_max : 1);
    uint8_t *rec = malloc(rec_size(CAIRN_STREAM_MAX, ss->state_max));
    if (!state || !rec)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < ss->nbuckets; i++)
        for (snap_stream_t *x = ss->b[i]; rc == 0 && x; x = x->next)
            for (uint32_t k = 0; rc == 0 && k < x->n; k++) {
                cairn__snap_t *sn = &x->s[k];
                rc = read_all(ss->fd, state, sn->state_len, sn->off);
                uint64_t size = rec_size(x->len, sn->state_len);
                if (rc == 0) {
                    rec_build(rec, size, x->name, x->len, sn->version, sn->seq,
                              sn->time_ns, state, sn->state_len);
                    rc = write_all(fd, rec, size, off);
                }
                sn->off = off + SNAP_REC_HDR + x->len;
                off += size;
            }
    free(state);
    free(rec);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc) {
        close(fd);
        unlink(tmp);
        return rc;
    }
    close(ss->fd);
    ss->fd = fd;
    ss->end = off;
    return 0;
}

int cairn__snap_open(const char *dir, const char *name, uint32_t state_max,
                     uint32_t max_streams, uint64_t log_next_seq,
                     cairn__snapstore_t **out)
{
    if (sodium_init() < 0)
        return -EIO;
    cairn__snapstore_t *ss = calloc(1, sizeof *ss);
    if (!ss)
        return -ENOMEM;
    ss->fd = -1;
    ss->state_max = state_max;
    ss->max_streams = max_streams;
    ss->nbuckets = 64;
    ss->b = calloc(ss->nbuckets, sizeof *ss->b);
    if (!ss->b) {
        free(ss);
        return -ENOMEM;
    }
    crypto_shorthash_keygen(ss->key);
    pthread_mutex_init(&ss->mu, NULL);
    int rc = 0;
    if (dir) {
        char path[4096];
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            rc = -errno;
        else if (snprintf(path, sizeof path, "%s/%s.snap", dir, name) >=
                 (int)sizeof path)
            rc = -ENAMETOOLONG;
        else if ((ss->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
            rc = -errno;
        if (rc == 0)
            rc = load(ss, log_next_seq);
        if (rc == 0 && ss->end > 2 * (ss->live_bytes + SNAP_HDR) + 65536) {
            rc = compact(ss, path);
            if (rc == 0) {
                int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd >= 0) {
                    fsync(dfd);
                    close(dfd);
                }
            }
        }
    }
    if (rc) {
        cairn__snap_close(ss);
        return rc;
    }
    *out = ss;
    return 0;
}

void cairn__snap_close(cairn__snapstore_t *ss)
{
    if (!ss)
        return;
    for (size_t i = 0; i < ss->nbuckets; i++)
        for (snap_stream_t *x = ss->b[i], *nx; x; x = nx) {
            nx = x->next;
            for (uint32_t k = 0; k < x->n; k++)
                free(x->s[k].mem);
            free(x);
        }
    free(ss->b);
    if (ss->fd >= 0)
        close(ss->fd);
    pthread_mutex_destroy(&ss->mu);
    free(ss);
}

int cairn__snap_best(cairn__snapstore_t *ss, const char *stream, size_t len,
                     uint64_t max_version, uint64_t max_seq,
                     int64_t max_time_ns, void *state, size_t cap,
                     cairn__snap_t *snap)
{
    int rc = 0;
    pthread_mutex_lock(&ss->mu);
    snap_stream_t *x = find(ss, stream, len);
    for (uint32_t i = x ? x->n : 0; i-- > 0;) {
        cairn__snap_t *sn = &x->s[i];
        if (sn->version > max_version || sn->seq > max_seq ||
            (max_time_ns >= 0 && sn->time_ns > max_time_ns) ||
            sn->state_len > cap)
            continue;
        if (sn->mem)
            memcpy(state, sn->mem, sn->state_len);
        else if (ss->fd >= 0 && (rc = read_all(ss->fd, state, sn->state_len,
                                                sn->off)) < 0)
            break;
        *snap = *sn;
        rc = 1;
        break;
    }
    pthread_mutex_unlock(&ss->mu);
    return rc;
}

int cairn__snap_has(cairn__snapstore_t *ss, const char *stream, size_t len,
                    uint64_t version)
{
    int has = 0;
    pthread_mutex_lock(&ss->mu);
    snap_stream_t *x = find(ss, stream, len);
    for (uint32_t i = 0; x && i < x->n; i++)
        if (x->s[i].version == version)
            has = 1;
    pthread_mutex_unlock(&ss->mu);
    return has;
}

int cairn__snap_put(cairn__snapstore_t *ss, const char *stream, size_t len,
                    uint64_t version, uint64_t seq, int64_t time_ns,
                    const void *state, uint32_t state_len)
{
    if (state_len > ss->state_max || len == 0 || len > CAIRN_STREAM_MAX)
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&ss->mu);
    snap_stream_t *x = find_or_add(ss, stream, len);
    if (!x) {
        rc = 1;
        goto out;
    }
    cairn__snap_t sn = {.version = version, .seq = seq, .time_ns = time_ns,
                        .state_len = state_len};
    if (ss->fd >= 0) {
        uint64_t size = rec_size(len, state_len);
        uint8_t *rec = malloc(size);
        if (!rec) {
            rc = -ENOMEM;
            goto out;
        }
        rec_build(rec, size, stream, len, version, seq, time_ns, state,
                  state_len);
        rc = write_all(ss->fd, rec, size, ss->end);
        free(rec);
        if (rc)
            goto out;
        sn.off = ss->end + SNAP_REC_HDR + len;
        ss->end += size;
    } else {
        if (!(sn.mem = malloc(state_len ? state_len : 1))) {
            rc = -ENOMEM;
            goto out;
        }
        if (state_len)
            memcpy(sn.mem, state, state_len);
    }
    snap_insert(ss, x, &sn);
out:
    pthread_mutex_unlock(&ss->mu);
    return rc;
}

void cairn__snap_drop(cairn__snapstore_t *ss, const char *stream, size_t len,
                      uint64_t version)
{
    pthread_mutex_lock(&ss->mu);
    snap_stream_t *x = find(ss, stream, len);
    while (x && x->n && x->s[x->n - 1].version >= version)
        snap_forget(ss, x, x->n - 1);
    pthread_mutex_unlock(&ss->mu);
}

uint64_t cairn__snap_count(cairn__snapstore_t *ss)
{
    pthread_mutex_lock(&ss->mu);
    uint64_t n = ss->nsnaps;
    pthread_mutex_unlock(&ss->mu);
    return n;
}
