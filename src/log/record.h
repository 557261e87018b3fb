/*
 * record.h (internal) — the in-memory record layout (docs/FORMAT.md, "Ring
 * records").  All integers little-endian (native on the supported targets),
 * every record 8-byte aligned, header 56 bytes:
 *
 *   off size field
 *    0   8   tag          commit marker: (position ^ ring key) | 1, stored
 *                         last, with release; anything else = not committed
 *    8   4   rec_len      bytes of the whole record incl. padding, % 8 == 0
 *   12   4   payload_len
 *   16   8   seq
 *   24   8   version
 *   32   8   time_ns      signed, ns since the Unix epoch
 *   40   1   stream_len   1..255
 *   41   1   type_len     1..128
 *   42   1   id_len       0..128
 *   43   1   corr_len     0..128
 *   44   1   caus_len     0..128
 *   45   1   flags        bit 0: payload is JSON; bit 1: more records of
 *                         the same append batch follow (all but the last)
 *   46   2   reserved     0
 *   48   8   prev_seq     seq of the stream's previous event (0: none), a
 *                         back-link for replaying one stream
 *   56   ..  stream, type, id, correlation id, causation id, payload,
 *            then zero padding to the next multiple of 8
 */
#ifndef CAIRN_LOG_RECORD_H
#define CAIRN_LOG_RECORD_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "cairn/log.h"

#define CAIRN__REC_HDR 56u
#define CAIRN__REC_BATCH_MORE 0x2u

typedef struct cairn__rec_hdr {
    _Atomic uint64_t tag;
    uint32_t rec_len;
    uint32_t payload_len;
    uint64_t seq;
    uint64_t version;
    int64_t time_ns;
    uint8_t stream_len;
    uint8_t type_len;
    uint8_t id_len;
    uint8_t corr_len;
    uint8_t caus_len;
    uint8_t flags;
    uint16_t reserved;
    uint64_t prev_seq;
} cairn__rec_hdr_t;

_Static_assert(sizeof(cairn__rec_hdr_t) == CAIRN__REC_HDR, "header is 56 bytes");

static inline uint64_t cairn__align8(uint64_t n) { return (n + 7) & ~UINT64_C(7); }

/* Bytes one event takes in the ring. */
static inline uint64_t cairn__rec_size(size_t stream_len,
                                       const cairn_event_in_t *ev)
{
    return cairn__align8(CAIRN__REC_HDR + stream_len + ev->type_len +
                         ev->id_len + ev->correlation_id_len +
                         ev->causation_id_len + ev->payload_len);
}

/* Write one record's header (except the tag) and body at p. */
static inline void cairn__rec_write(uint8_t *p, uint64_t rec_len,
                                    const char *stream, size_t stream_len,
                                    const cairn_event_in_t *ev, uint64_t seq,
                                    uint64_t version, int64_t time_ns,
                                    uint64_t prev_seq, int more)
{
    cairn__rec_hdr_t *h = (cairn__rec_hdr_t *)p;
    h->rec_len = (uint32_t)rec_len;
    h->payload_len = (uint32_t)ev->payload_len;
    h->seq = seq;
    h->version = version;
    h->time_ns = time_ns;
    h->stream_len = (uint8_t)stream_len;
    h->type_len = (uint8_t)ev->type_len;
    h->id_len = (uint8_t)ev->id_len;
    h->corr_len = (uint8_t)ev->correlation_id_len;
    h->caus_len = (uint8_t)ev->causation_id_len;
    h->flags = (uint8_t)((ev->flags & CAIRN_EVENT_JSON) |
                         (more ? CAIRN__REC_BATCH_MORE : 0));
    h->reserved = 0;
    h->prev_seq = prev_seq;
    uint8_t *b = p + CAIRN__REC_HDR;
    memcpy(b, stream, stream_len);
    b += stream_len;
    memcpy(b, ev->type, ev->type_len);
    b += ev->type_len;
    if (ev->id_len) {
        memcpy(b, ev->id, ev->id_len);
        b += ev->id_len;
    }
    if (ev->correlation_id_len) {
        memcpy(b, ev->correlation_id, ev->correlation_id_len);
        b += ev->correlation_id_len;
    }
    if (ev->causation_id_len) {
        memcpy(b, ev->causation_id, ev->causation_id_len);
        b += ev->causation_id_len;
    }
    if (ev->payload_len) {
        memcpy(b, ev->payload, ev->payload_len);
        b += ev->payload_len;
    }
    /* Zero the padding so records are byte-for-byte deterministic. */
    memset(b, 0, (size_t)(p + rec_len - b));
}

/* Decode a committed record into ev (pointers into the record). */
static inline void cairn__rec_decode(const uint8_t *p, cairn_event_t *ev)
{
    const cairn__rec_hdr_t *h = (const cairn__rec_hdr_t *)p;
    const char *b = (const char *)p + CAIRN__REC_HDR;
    ev->seq = h->seq;
    ev->version = h->version;
    ev->time_ns = h->time_ns;
    ev->flags = h->flags & CAIRN_EVENT_JSON;
    ev->prev_seq = h->prev_seq;
    ev->stream_len = h->stream_len;
    ev->stream = b;
    b += h->stream_len;
    ev->type_len = h->type_len;
    ev->type = b;
    b += h->type_len;
    ev->id_len = h->id_len;
    ev->id = h->id_len ? b : NULL;
    b += h->id_len;
    ev->correlation_id_len = h->corr_len;
    ev->correlation_id = h->corr_len ? b : NULL;
    b += h->corr_len;
    ev->causation_id_len = h->caus_len;
    ev->causation_id = h->caus_len ? b : NULL;
    b += h->caus_len;
    ev->payload_len = h->payload_len;
    ev->payload = b;
}

/* Does ev pass the filter? */
int cairn__filter_match(const cairn_read_filter_t *f, const cairn_event_t *ev);

/* Validate a batch; sets *bytes to the ring bytes it needs. */
int cairn__batch_check(const char *stream, size_t stream_len,
                       int allow_reserved, const cairn_event_in_t *events, size_t n,
                       const cairn_log_opts_t *o, uint64_t cap,
                       uint64_t *bytes);

#endif
