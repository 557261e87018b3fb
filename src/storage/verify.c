/*
 * verify.c — cairn_log_verify(): an offline check of a data directory,
 * behind `cairn verify DIR`.
 *
 * It re-reads every segment (decompressing sealed .zst ones) and checks
 * each header's CRC and format version, every record's length, marker and
 * CRC32C, seq continuity inside and across segments, that no append batch
 * is left incomplete, and re-derives every stream's versions (contiguous,
 * rising with seq; starting at 1 unless retention removed the start of the
 * log).  cairn keeps its seq and time indexes in memory, rebuilt on open
 * from the same scan; verify builds them the same way and checks they are
 * monotonic.  The first problem found is reported with file and offset.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log/record.h"
#include "storage/segment.h"

typedef struct vstream {
    char *name;
    uint8_t len;
    uint64_t version;
    uint64_t last_seq;
} vstream_t;

typedef struct vmap {
    vstream_t *slots;
    size_t cap, n;
    unsigned char key[crypto_shorthash_KEYBYTES];
} vmap_t;

static uint64_t vhash(const vmap_t *m, const char *s, size_t n)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_shorthash(out, (const unsigned char *)s, n, m->key);
    memcpy(&h, out, 8);
    return h;
}

static vstream_t *vmap_get(vmap_t *m, const char *name, size_t len)
{
    if (2 * (m->n + 1) > m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 1024;
        vstream_t *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return NULL;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slots[i].name)
                continue;
            size_t j = vhash(m, m->slots[i].name, m->slots[i].len) & (cap - 1);
            while (slots[j].name)
                j = (j + 1) & (cap - 1);
            slots[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    size_t j = vhash(m, name, len) & (m->cap - 1);
    while (m->slots[j].name) {
        if (m->slots[j].len == len && memcmp(m->slots[j].name, name, len) == 0)
            return &m->slots[j];
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j].name = malloc(len);
    if (!m->slots[j].name)
        return NULL;
    memcpy(m->slots[j].name, name, len);
    m->slots[j].len = (uint8_t)len;
    m->slots[j].version = 0;
    m->n++;
    return &m->slots[j];
}

static void vmap_free(vmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].name);
    free(m->slots);
}

typedef struct vseg {
    uint64_t seq;
    int compressed;
} vseg_t;

static int cmp_vseg(const void *a, const void *b)
{
    const vseg_t *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

#define PROBLEM(...)                                                           \
    do {                                                                       \
        snprintf(r->problem, sizeof r->problem, __VA_ARGS__);                  \
        rc = CAIRN_ECORRUPT;                                                   \
        goto done;                                                             \
    } while (0)

int cairn_log_verify(const char *dir, cairn_verify_report_t *r)
{
    memset(r, 0, sizeof *r);
    if (sodium_init() < 0)
        return -EIO;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        snprintf(r->problem, sizeof r->problem, "%s: %s", dir, strerror(e));
        return -e;
    }
    vseg_t *segs = NULL;
    size_t nsegs = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        vseg_t v;
        if (!cairn__seg_name(de->d_name, &v.seq, &v.compressed))
            continue;
        if (nsegs == cap) {
            cap = cap ? 2 * cap : 64;
            vseg_t *n = realloc(segs, cap * sizeof *n);
            if (!n) {
                closedir(d);
                free(segs);
                return -ENOMEM;
            }
            segs = n;
        }
        segs[nsegs++] = v;
    }
    closedir(d);
    qsort(segs, nsegs, sizeof *segs, cmp_vseg);

    vmap_t m = {0};
    crypto_shorthash_keygen(m.key);
    int rc = 0;
    uint64_t next_seq = 0;
    int64_t max_time = INT64_MIN;
    uint8_t *data = NULL;
    size_t len = 0;
    int owned = 0;
    char path[512];
    for (size_t i = 0; i < nsegs; i++) {
        cairn__seg_path(path, sizeof path, dir, segs[i].seq,
                        segs[i].compressed);
        if (i > 0 && segs[i].seq == segs[i - 1].seq)
            PROBLEM("%s: offset 0: two files for segment %llu", path,
                    (unsigned long long)segs[i].seq);
        int lrc = cairn__seg_load(path, segs[i].compressed, &data, &len,
                                  &owned);
        if (lrc < 0) {
            data = NULL;
            PROBLEM("%s: offset 0: cannot read: %s", path,
                    cairn_strerror(lrc));
        }
        uint64_t first;
        if (cairn__seg_header_check(data, len, &first) < 0 ||
            first != segs[i].seq)
            PROBLEM("%s: offset 0: bad segment header", path);
        if (i == 0) {
            next_seq = first;
            r->first_seq = first;
        } else if (first != next_seq) {
            PROBLEM("%s: offset 0: segment starts at seq %llu, expected %llu",
                    path, (unsigned long long)first,
                    (unsigned long long)next_seq);
        }
        size_t off = CAIRN__SEG_HDR;
        int in_batch = 0;
        for (;;) {
            cairn_event_t ev;
            long n = cairn__seg_record(data, len, off, 0, &ev);
            if (n == 0)
                break;
            if (n < 0)
                PROBLEM("%s: offset %zu: damaged record (length, marker or "
                        "CRC)",
                        path, off);
            if (ev.seq != next_seq)
                PROBLEM("%s: offset %zu: seq %llu where %llu was expected",
                        path, off, (unsigned long long)ev.seq,
                        (unsigned long long)next_seq);
            vstream_t *vs = vmap_get(&m, ev.stream, ev.stream_len);
            if (!vs) {
                rc = -ENOMEM;
                goto done;
            }
            int first_sight = vs->version == 0;
            if (first_sight ? (r->first_seq == 1 && ev.version != 1)
                            : ev.version != vs->version + 1)
                PROBLEM("%s: offset %zu: stream '%.*s' version %llu after "
                        "%llu",
                        path, off, (int)ev.stream_len, ev.stream,
                        (unsigned long long)ev.version,
                        (unsigned long long)vs->version);
            if (!first_sight && ev.prev_seq != vs->last_seq)
                PROBLEM("%s: offset %zu: back-link to seq %llu, the stream's "
                        "previous event is %llu",
                        path, off, (unsigned long long)ev.prev_seq,
                        (unsigned long long)vs->last_seq);
            vs->version = ev.version;
            vs->last_seq = ev.seq;
            if (ev.time_ns > max_time)
                max_time = ev.time_ns; /* the time index's running max */
            in_batch = (((const cairn__rec_hdr_t *)(data + off))->flags &
                        CAIRN__REC_BATCH_MORE) != 0;
            next_seq = ev.seq + 1;
            r->records++;
            off += (size_t)n;
        }
        if (in_batch)
            PROBLEM("%s: offset %zu: append batch cut short", path, off);
        /* Anything after the end must be zero fill (preallocation). */
        for (size_t k = off; k < len; k++)
            if (data[k] != 0)
                PROBLEM("%s: offset %zu: data after the last record", path,
                        off);
        cairn__seg_unload(data, len, owned);
        data = NULL;
        r->segments++;
    }
    r->next_seq = next_seq;
    r->streams = m.n;
done:
    if (data)
        cairn__seg_unload(data, len, owned);
    vmap_free(&m);
    free(segs);
    return rc;
}
