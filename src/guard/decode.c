/*
 * decode.c — content-encoding detection and bounded streaming
 * decompression (gzip, zlib, raw deflate with zlib; zstd with libzstd).
 *
 * DESIGN.  One budget covers every layer.  Decoded layers are written back
 * to back into one workspace buffer (layer 2 reads layer 1's bytes from it
 * and appends its own), and the sum of all bytes produced may not exceed
 * max_decompressed_bytes, so a bomb nested in a bomb gains nothing and
 * memory stays at the cap.  The ratio cap compares that same sum with the
 * bytes of the original input consumed so far (not with the previous
 * layer's size), so nesting cannot multiply ratios either.
 *
 * Decoders run in steps with an output window of at most DECODE_WINDOW
 * bytes, never more than the budget left plus one byte, and the caps are
 * checked after every step: decoding stops at the first byte past the
 * absolute cap, or within one window of crossing the ratio cap, without
 * decoding the rest.  The buffer grows geometrically up to cap + 1 bytes;
 * because layer 2's input lives in the buffer being grown, decoders address
 * their input by offset and re-derive pointers before each step.
 *
 * zstd's window is capped with ZSTD_d_windowLogMax
 * (CAIRN_GUARD_ZSTD_WINDOW_LOG_MAX): a frame asking for more is refused
 * before the decoder allocates it (CAIRN_EGUARD_WINDOW_TOO_LARGE).
 *
 * Layers after the first are found by sniffing the previous layer's output,
 * iteratively and at most max_decode_layers deep.  The zlib sniff accepts
 * only the four headers real encoders write (78 01, 78 5E, 78 9C, 78 DA);
 * brotli has no magic bytes and is never sniffed (see docs/GUARD.md).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "guard/guard_internal.h"

#define DECODE_WINDOW (64u << 10)

int cairn__guard_sniff(const unsigned char *p, size_t len)
{
    if (len >= 3 && p[0] == 0x1F && p[1] == 0x8B && p[2] == 0x08)
        return CAIRN_GUARD_ENC_GZIP;
    if (len >= 2 && p[0] == 0x1F && p[1] == 0x9D)
        return CAIRN_GUARD_ENC_COMPRESS;
    if (len >= 2 && p[0] == 0x78 &&
        (p[1] == 0x01 || p[1] == 0x5E || p[1] == 0x9C || p[1] == 0xDA))
        return CAIRN_GUARD_ENC_ZLIB;
    if (len >= 4 && p[0] == 0x28 && p[1] == 0xB5 && p[2] == 0x2F &&
        p[3] == 0xFD)
        return CAIRN_GUARD_ENC_ZSTD;
    /* zstd skippable frames: magic 0x184D2A50..5F, little-endian. */
    if (len >= 4 && (p[0] & 0xF0) == 0x50 && p[1] == 0x2A && p[2] == 0x4D &&
        p[3] == 0x18)
        return CAIRN_GUARD_ENC_ZSTD;
    if (len >= 4 && p[0] == 'B' && p[1] == 'Z' && p[2] == 'h' &&
        p[3] >= '1' && p[3] <= '9')
        return CAIRN_GUARD_ENC_BZIP2;
    if (len >= 6 && memcmp(p, "\xFD" "7zXZ\0", 6) == 0)
        return CAIRN_GUARD_ENC_XZ;
    if (len >= 4 && p[0] == 'P' && p[1] == 'K' &&
        ((p[2] == 3 && p[3] == 4) || (p[2] == 5 && p[3] == 6) ||
         (p[2] == 7 && p[3] == 8)))
        return CAIRN_GUARD_ENC_ZIP;
    if (len >= 4 && ((p[0] == 0x04 && p[1] == 0x22 && p[2] == 0x4D &&
                      p[3] == 0x18) ||
                     (p[0] == 0x02 && p[1] == 0x21 && p[2] == 0x4C &&
                      p[3] == 0x18)))
        return CAIRN_GUARD_ENC_LZ4;
    if (len >= 6 && memcmp(p, "7z\xBC\xAF\x27\x1C", 6) == 0)
        return CAIRN_GUARD_ENC_7Z;
    return CAIRN_GUARD_ENC_IDENTITY;
}

static int decodable(int enc)
{
    return enc == CAIRN_GUARD_ENC_GZIP || enc == CAIRN_GUARD_ENC_ZLIB ||
           enc == CAIRN_GUARD_ENC_DEFLATE_RAW || enc == CAIRN_GUARD_ENC_ZSTD;
}

/* One layer's decoding job. */
struct job {
    const cairn_guard_opts_t *o;
    cairn_guard_result_t *res;
    struct cairn__guard_ws *ws;
    const unsigned char *ext; /* input outside the buffer, or NULL */
    size_t in_off, in_len;    /* input (offset into the buffer if !ext) */
    size_t in_pos;            /* input consumed */
    size_t used;              /* buffer bytes in use (all layers) */
    size_t layer_start;       /* where this layer's output begins */
    uint64_t wire_len;        /* original input length */
    int first_layer;
};

static const unsigned char *job_in(const struct job *j)
{
    return (j->ext ? j->ext : j->ws->decode_buf + j->in_off) + j->in_pos;
}

/* Room for the next step's output; returns its size (0: error in *rc). */
static size_t job_room(struct job *j, int *rc)
{
    size_t limit = (size_t)j->o->max_decompressed_bytes + 1;
    size_t room = limit - j->used;
    if (room > DECODE_WINDOW)
        room = DECODE_WINDOW;
    if (j->used + room > j->ws->decode_cap) {
        size_t want = j->ws->decode_cap ? j->ws->decode_cap * 2 : DECODE_WINDOW;
        if (want < j->used + room)
            want = j->used + room;
        if (want > limit)
            want = limit;
        unsigned char *nb = realloc(j->ws->decode_buf, want);
        if (!nb) {
            *rc = -ENOMEM;
            return 0;
        }
        j->ws->decode_buf = nb;
        j->ws->decode_cap = want;
    }
    *rc = 0;
    return room;
}

/* out > ratio * in, exactly, without a wider type: with q = out / ratio
 * and r = out % ratio, out > ratio * in iff q > in or (q == in and r > 0). */
int cairn__guard_ratio_exceeded(uint64_t out, uint64_t in, uint64_t ratio)
{
    uint64_t q = out / ratio, r = out % ratio;
    return q > in || (q == in && r > 0);
}

/* Account one step and apply the caps. */
static int job_step(struct job *j, size_t consumed, size_t produced)
{
    cairn_guard_result_t *res = j->res;
    j->in_pos += consumed;
    j->used += produced;
    res->bytes_out = j->used;
    res->bytes_in = j->first_layer ? j->in_pos : j->wire_len;
    if (res->bytes_out > j->o->max_decompressed_bytes)
        return cairn__guard_fail(res, CAIRN_EGUARD_BOMB_SIZE,
                                 "max_decompressed_bytes",
                                 j->o->max_decompressed_bytes, 0);
    if (res->bytes_out > CAIRN_GUARD_RATIO_GRACE_BYTES &&
        cairn__guard_ratio_exceeded(res->bytes_out, res->bytes_in,
                       j->o->max_compression_ratio))
        return cairn__guard_fail(res, CAIRN_EGUARD_BOMB_RATIO,
                                 "max_compression_ratio",
                                 j->o->max_compression_ratio, 0);
    return 0;
}

static int corrupt(struct job *j)
{
    return cairn__guard_fail(j->res, CAIRN_EGUARD_CORRUPT_ENCODING, NULL, 0,
                             0);
}

static int inflate_layer(struct job *j, int enc)
{
    const unsigned char *in0 = job_in(j);
    int wbits = 15 + 16; /* gzip */
    if (enc == CAIRN_GUARD_ENC_DEFLATE_RAW) {
        wbits = -15;
    } else if (enc == CAIRN_GUARD_ENC_ZLIB) {
        /* HTTP "deflate" means zlib (RFC 9110 8.4.1.2), but some clients
         * send raw deflate: fall back when the zlib header is invalid. */
        wbits = 15;
        if (j->in_len < 2 || (in0[0] & 0x0F) != 8 ||
            ((unsigned)in0[0] << 8 | in0[1]) % 31 != 0)
            wbits = -15;
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    int zr = inflateInit2(&zs, wbits);
    if (zr != Z_OK)
        return cairn__guard_fail(j->res, zr == Z_MEM_ERROR ? -ENOMEM :
                                 CAIRN_EGUARD_CORRUPT_ENCODING, NULL, 0, 0);
    int rc = 0;
    for (;;) {
        size_t room = job_room(j, &rc);
        if (rc) {
            rc = cairn__guard_fail(j->res, rc, NULL, 0, 0);
            break;
        }
        size_t avail = j->in_len - j->in_pos;
        zs.next_in = (unsigned char *)job_in(j);
        zs.avail_in = avail > UINT_MAX ? UINT_MAX : (uInt)avail;
        zs.next_out = j->ws->decode_buf + j->used;
        zs.avail_out = (uInt)room;
        uInt in_before = zs.avail_in;
        zr = inflate(&zs, Z_NO_FLUSH);
        size_t consumed = in_before - zs.avail_in;
        size_t produced = room - zs.avail_out;
        if ((rc = job_step(j, consumed, produced)) != 0)
            break;
        if (zr == Z_STREAM_END) {
            if (j->in_pos == j->in_len)
                break;
            /* Another gzip member may follow (RFC 1952 2.2); anything else
             * after the end of the stream is corrupt. */
            const unsigned char *next = job_in(j);
            if (enc == CAIRN_GUARD_ENC_GZIP && j->in_len - j->in_pos >= 3 &&
                next[0] == 0x1F && next[1] == 0x8B && next[2] == 0x08) {
                inflateReset(&zs);
                continue;
            }
            rc = corrupt(j);
            break;
        }
        if (zr == Z_OK)
            continue;
        if (zr == Z_MEM_ERROR)
            rc = cairn__guard_fail(j->res, -ENOMEM, NULL, 0, 0);
        else /* Z_DATA_ERROR, Z_NEED_DICT, Z_BUF_ERROR (truncated) */
            rc = corrupt(j);
        break;
    }
    inflateEnd(&zs);
    return rc;
}

static int zstd_layer(struct job *j)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx)
        return cairn__guard_fail(j->res, -ENOMEM, NULL, 0, 0);
    int rc = 0;
    size_t zr = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax,
                                       CAIRN_GUARD_ZSTD_WINDOW_LOG_MAX);
    if (ZSTD_isError(zr)) {
        ZSTD_freeDCtx(dctx);
        return cairn__guard_fail(j->res, -EINVAL, NULL, 0, 0);
    }
    for (;;) {
        size_t room = job_room(j, &rc);
        if (rc) {
            rc = cairn__guard_fail(j->res, rc, NULL, 0, 0);
            break;
        }
        ZSTD_inBuffer ib = {job_in(j), j->in_len - j->in_pos, 0};
        ZSTD_outBuffer ob = {j->ws->decode_buf + j->used, room, 0};
        zr = ZSTD_decompressStream(dctx, &ob, &ib);
        if (ZSTD_isError(zr)) {
            ZSTD_ErrorCode ec = ZSTD_getErrorCode(zr);
            if (ec == ZSTD_error_frameParameter_windowTooLarge)
                rc = cairn__guard_fail(j->res, CAIRN_EGUARD_WINDOW_TOO_LARGE,
                                       "zstd_window_log_max",
                                       CAIRN_GUARD_ZSTD_WINDOW_LOG_MAX, 0);
            else if (ec == ZSTD_error_memory_allocation)
                rc = cairn__guard_fail(j->res, -ENOMEM, NULL, 0, 0);
            else
                rc = corrupt(j);
            break;
        }
        if ((rc = job_step(j, ib.pos, ob.pos)) != 0)
            break;
        if (j->in_pos == j->in_len) {
            if (zr == 0)
                break; /* the last frame is complete */
            if (ob.pos < ob.size) {
                rc = corrupt(j); /* wants input that is not there */
                break;
            }
        }
    }
    ZSTD_freeDCtx(dctx);
    return rc;
}

int cairn__guard_decode(const cairn_guard_opts_t *o, const void *body,
                        size_t len, int encoding, cairn_guard_result_t *res)
{
    res->payload = body;
    res->payload_len = len;
    res->bytes_in = len;
    if (len > o->max_input_bytes)
        return cairn__guard_fail(res, CAIRN_EGUARD_TOO_LARGE,
                                 "max_input_bytes", o->max_input_bytes, 0);
    if (encoding < CAIRN_GUARD_ENC_AUTO || encoding > CAIRN_GUARD_ENC_UNKNOWN)
        return cairn__guard_fail(res, CAIRN_EBAD_OPTION, NULL, 0, 0);
    int enc = encoding == CAIRN_GUARD_ENC_AUTO
                  ? cairn__guard_sniff(body, len)
                  : encoding;
    res->encoding = enc;
    if (enc == CAIRN_GUARD_ENC_IDENTITY)
        return 0;

    struct cairn__guard_ws *ws = cairn__guard_ws(res);
    if (!ws)
        return cairn__guard_fail(res, -ENOMEM, NULL, 0, 0);
    struct job j = {.o = o, .res = res, .ws = ws, .ext = body,
                    .in_len = len, .wire_len = len, .first_layer = 1};
    for (;;) {
        if (!decodable(enc)) {
            if (o->allow_unsupported_encoding)
                return 0; /* res->payload: this layer, undecoded */
            return cairn__guard_fail(res, CAIRN_EGUARD_UNSUPPORTED_ENCODING,
                                     NULL, 0, 0);
        }
        if (res->layers >= o->max_decode_layers)
            return cairn__guard_fail(res, CAIRN_EGUARD_TOO_MANY_LAYERS,
                                     "max_decode_layers",
                                     o->max_decode_layers, 0);
        j.layer_start = j.used;
        j.in_pos = 0;
        int rc = enc == CAIRN_GUARD_ENC_ZSTD ? zstd_layer(&j)
                                             : inflate_layer(&j, enc);
        res->layers++;
        if (rc)
            return rc;
        /* The next layer reads this one's output from the buffer. */
        j.ext = NULL;
        j.in_off = j.layer_start;
        j.in_len = j.used - j.layer_start;
        j.first_layer = 0;
        res->payload = ws->decode_buf + j.in_off;
        res->payload_len = j.in_len;
        enc = cairn__guard_sniff(res->payload, res->payload_len);
        if (enc == CAIRN_GUARD_ENC_IDENTITY)
            return 0;
    }
}

/* ---- declared encodings ---------------------------------------------- */

static const struct {
    const char *name;
    int enc;
} codings[] = {
    {"identity", CAIRN_GUARD_ENC_IDENTITY},
    {"gzip", CAIRN_GUARD_ENC_GZIP},
    {"x-gzip", CAIRN_GUARD_ENC_GZIP},
    {"deflate", CAIRN_GUARD_ENC_ZLIB},
    {"zstd", CAIRN_GUARD_ENC_ZSTD},
    {"br", CAIRN_GUARD_ENC_BROTLI},
    {"compress", CAIRN_GUARD_ENC_COMPRESS},
    {"x-compress", CAIRN_GUARD_ENC_COMPRESS},
    {"bzip2", CAIRN_GUARD_ENC_BZIP2},
    {"xz", CAIRN_GUARD_ENC_XZ},
    {"lz4", CAIRN_GUARD_ENC_LZ4},
};

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int cairn_guard_encoding_parse(const char *value, size_t len, int *encoding)
{
    /* The last non-empty element of the list is the outermost coding. */
    size_t end = len, count = 0;
    const char *last = NULL;
    size_t last_len = 0;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && value[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && is_blank(value[a]))
            a++;
        while (b > a && is_blank(value[b - 1]))
            b--;
        if (b > a) {
            if (!last) {
                last = value + a;
                last_len = b - a;
            }
            count++;
        }
        end = start ? start - 1 : 0;
    }
    if (count > CAIRN_GUARD_MAX_DECODE_LAYERS_CAP)
        return CAIRN_EGUARD_TOO_MANY_LAYERS;
    if (!last) {
        *encoding = CAIRN_GUARD_ENC_IDENTITY;
        return 0;
    }
    *encoding = CAIRN_GUARD_ENC_UNKNOWN;
    for (size_t k = 0; k < sizeof codings / sizeof codings[0]; k++)
        if (strlen(codings[k].name) == last_len &&
            strncasecmp(codings[k].name, last, last_len) == 0)
            *encoding = codings[k].enc;
    return 0;
}

const char *cairn_guard_encoding_name(int encoding)
{
    static const char *const names[] = {
        "auto", "identity", "gzip", "zlib", "deflate-raw", "zstd", "br",
        "bzip2", "xz", "zip", "lz4", "7z", "compress", "unknown"};
    if (encoding < 0 || encoding > CAIRN_GUARD_ENC_UNKNOWN)
        return "invalid";
    return names[encoding];
}
