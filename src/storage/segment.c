/*
 * segment.c — encode, check and load segment files (format in segment.h
 * and docs/FORMAT.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <isa-l.h>
#include <zstd.h>

#include "log/record.h"
#include "storage/segment.h"

static uint32_t crc32c(const void *p, size_t n)
{
    return crc32_iscsi((unsigned char *)p, (int)n, 0);
}

void cairn__seg_header(uint8_t hdr[CAIRN__SEG_HDR], uint64_t first_seq,
                       int64_t created_ns)
{
    memset(hdr, 0, CAIRN__SEG_HDR);
    memcpy(hdr, CAIRN__SEG_MAGIC, 8);
    uint32_t v = CAIRN__SEG_VERSION, hs = CAIRN__SEG_HDR;
    memcpy(hdr + 8, &v, 4);
    memcpy(hdr + 12, &hs, 4);
    memcpy(hdr + 16, &first_seq, 8);
    memcpy(hdr + 24, &created_ns, 8);
    uint32_t crc = crc32c(hdr, 32);
    memcpy(hdr + 32, &crc, 4);
}

int cairn__seg_header_check(const uint8_t *hdr, size_t len, uint64_t *first_seq)
{
    if (len < CAIRN__SEG_HDR || memcmp(hdr, CAIRN__SEG_MAGIC, 8) != 0)
        return CAIRN_ECORRUPT;
    uint32_t crc, v, hs;
    memcpy(&crc, hdr + 32, 4);
    if (crc != crc32c(hdr, 32))
        return CAIRN_ECORRUPT;
    memcpy(&v, hdr + 8, 4);
    memcpy(&hs, hdr + 12, 4);
    if (v != CAIRN__SEG_VERSION || hs != CAIRN__SEG_HDR)
        return CAIRN_EFORMAT_VERSION;
    memcpy(first_seq, hdr + 16, 8);
    return 0;
}

void cairn__seg_encode(uint8_t *out, const uint8_t *rec, uint32_t rec_len)
{
    uint32_t marker = CAIRN__REC_MARKER;
    memcpy(out + 8, rec + 8, rec_len - 8);
    memcpy(out + 4, &marker, 4);
    uint32_t crc = crc32c(out + 4, rec_len - 4);
    memcpy(out, &crc, 4);
}

long cairn__seg_record(const uint8_t *data, size_t len, size_t off,
                       uint64_t expect_seq, cairn_event_t *ev)
{
    if (len - off < 8)
        return 0;
    uint32_t crc, marker, rec_len;
    memcpy(&crc, data + off, 4);
    memcpy(&marker, data + off + 4, 4);
    if (len - off < 12) {
        return (crc == 0 && marker == 0) ? 0 : CAIRN_ECORRUPT;
    }
    memcpy(&rec_len, data + off + 8, 4);
    if (crc == 0 && marker == 0 && rec_len == 0)
        return 0; /* preallocated zeros: the end */
    if (marker != CAIRN__REC_MARKER || rec_len < CAIRN__REC_HDR ||
        rec_len % 8 != 0 || rec_len > len - off)
        return CAIRN_ECORRUPT;
    if (crc != crc32c(data + off + 4, rec_len - 4))
        return CAIRN_ECORRUPT;
    const cairn__rec_hdr_t *h = (const cairn__rec_hdr_t *)(data + off);
    uint64_t body = (uint64_t)h->stream_len + h->type_len + h->id_len +
                    h->corr_len + h->caus_len + h->payload_len;
    if (CAIRN__REC_HDR + body > rec_len || h->stream_len == 0 ||
        h->type_len == 0)
        return CAIRN_ECORRUPT;
    if (expect_seq && h->seq != expect_seq)
        return CAIRN_ECORRUPT;
    cairn__rec_decode(data + off, ev);
    return (long)rec_len;
}

int cairn__seg_path(char *buf, size_t len, const char *dir, uint64_t seq,
                    int compressed)
{
    int n = snprintf(buf, len, "%s/%020" PRIu64 ".seg%s", dir, seq,
                     compressed ? ".zst" : "");
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int cairn__seg_name(const char *name, uint64_t *seq, int *compressed)
{
    size_t n = strlen(name);
    if (n == 24 && strcmp(name + 20, ".seg") == 0)
        *compressed = 0;
    else if (n == 28 && strcmp(name + 20, ".seg.zst") == 0)
        *compressed = 1;
    else
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *seq = v;
    return 1;
}

int cairn__seg_load(const char *path, int compressed, uint8_t **data,
                    size_t *len, int *owned)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    size_t flen = (size_t)st.st_size;
    if (flen == 0) {
        close(fd);
        *data = NULL;
        *len = 0;
        *owned = 1;
        return 0;
    }
    uint8_t *map = mmap(NULL, flen, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return -e;
    if (!compressed) {
        *data = map;
        *len = flen;
        *owned = 0;
        return 0;
    }
    /* A sealed segment decompresses to at most its segment size; the
     * frame header says how much (we write it), and we refuse frames that
     * do not say or claim more than 4 GiB. */
    unsigned long long out = ZSTD_getFrameContentSize(map, flen);
    if (out == ZSTD_CONTENTSIZE_ERROR || out == ZSTD_CONTENTSIZE_UNKNOWN ||
        out > (UINT64_C(4) << 30)) {
        munmap(map, flen);
        return CAIRN_ECORRUPT;
    }
    uint8_t *buf = malloc(out ? out : 1);
    if (!buf) {
        munmap(map, flen);
        return -ENOMEM;
    }
    size_t got = ZSTD_decompress(buf, out, map, flen);
    munmap(map, flen);
    if (ZSTD_isError(got) || got != out) {
        free(buf);
        return CAIRN_ECORRUPT;
    }
    *data = buf;
    *len = got;
    *owned = 1;
    return 0;
}

void cairn__seg_unload(uint8_t *data, size_t len, int owned)
{
    if (owned)
        free(data);
    else if (data)
        munmap(data, len);
}
