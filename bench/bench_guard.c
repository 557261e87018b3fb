/*
 * bench_guard.c — payload guard benchmarks (issue 5):
 *
 *   guard.json.validate   cairn_guard_json_validate over a realistic 2 KiB
 *                         JSON event (duplicate keys checked), MB/s;
 *                         baseline: jansson json_loadb + json_decref of the
 *                         same bytes (guard.json.jansson)
 *   guard.scan.pcre2      the default pattern set compiled with PCRE2 JIT,
 *                         one regex after another over the same event, MB/s
 *   guard.scan.hyperscan  cairn_guard_scan with the same set (one Hyperscan
 *                         database), MB/s; baseline: guard.scan.pcre2
 *   guard.check.event     cairn_guard_check of the same event: JSON
 *                         validation + Hyperscan scan, the common case of an
 *                         append (no decoding, no match), MB/s; baseline:
 *                         jansson parsing alone (guard.json.jansson)
 *   guard.inflate.gzip    cairn_guard_decode of 64 KiB of NDJSON events
 *                         gzip'd at level 6, MB/s of decoded output;
 *                         baseline: zlib uncompress() of the same deflate
 *                         data in its zlib wrapper (uncompress takes no
 *                         gzip; the streams differ only in header and
 *                         checksum) (guard.inflate.uncompress)
 *
 * Each figure is the best of five timed rounds, so a preempted round does
 * not count against either side.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <zlib.h>

#include "bench.h"
#include "cairn/guard.h"
#include "guard/guard_internal.h"

#define ROUNDS 5

/* A gateway's request record, padded with realistic fields to 2 KiB. */
static size_t make_event(char *out, size_t cap, unsigned seed)
{
    size_t w = (size_t)snprintf(
        out, cap,
        "{\"request\":{\"id\":\"req-%08x-4b1e-9c2d\",\"method\":\"POST\","
        "\"path\":\"/v1/tools/call\",\"query\":{\"trace\":\"1\","
        "\"region\":\"eu-west-1\"},\"headers\":{\"user-agent\":"
        "\"Mozilla/5.0 (X11; Linux x86_64) gateway-client/2.4.1\","
        "\"accept\":\"application/json\",\"content-type\":"
        "\"application/json; charset=utf-8\",\"x-request-id\":"
        "\"3f2a9c1e-77b4-4d5e-a1f0-%08x\"}},\"client\":{\"id\":"
        "\"client-%u\",\"ip\":\"203.0.113.%u\",\"roles\":[\"reader\","
        "\"tools\"],\"quota\":{\"limit\":1000,\"remaining\":%u,"
        "\"reset_s\":42}},\"tool\":{\"name\":\"search_documents\","
        "\"arguments\":{\"query\":\"quarterly revenue by region, "
        "excluding returns\",\"limit\":25,\"offset\":0,\"filters\":"
        "[{\"field\":\"year\",\"op\":\"eq\",\"value\":2026},{\"field\":"
        "\"status\",\"op\":\"in\",\"value\":[\"final\",\"approved\"]}],"
        "\"highlight\":true}},\"response\":{\"status\":200,"
        "\"latency_ms\":%u.%03u,\"bytes\":18734,\"cache\":\"miss\"},"
        "\"labels\":[",
        seed, seed * 7u, seed % 1000, seed % 250, 1000 - seed % 1000,
        seed % 90, seed % 1000);
    for (unsigned k = 0; w + 160 < cap && w < 1900; k++)
        w += (size_t)snprintf(out + w, cap - w,
                              "%s{\"key\":\"label-%u\",\"value\":\"value "
                              "number %u for the benchmark event\"}",
                              k ? "," : "", k, k * 31u + seed);
    w += (size_t)snprintf(out + w, cap - w, "],\"ok\":true,\"note\":null}");
    return w;
}

static double mbps(size_t bytes, uint64_t ns)
{
    return ns ? (double)bytes / 1e6 / ((double)ns / 1e9) : 0;
}

/* Best-of-ROUNDS throughput of body; each round runs batches of 16 calls
 * until round_ns have passed, so slow and fast sides take equal time. */
#define TIMED(best_mbps, bytes_per_call, round_ns, body)                       \
    do {                                                                       \
        (best_mbps) = 0;                                                       \
        for (int round_ = 0; round_ < ROUNDS; round_++) {                      \
            uint64_t t0_ = cairn_bench_now_ns(), el_;                          \
            size_t calls_ = 0;                                                 \
            do {                                                               \
                for (int it_ = 0; it_ < 16; it_++) {                           \
                    body;                                                      \
                }                                                              \
                calls_ += 16;                                                  \
                el_ = cairn_bench_now_ns() - t0_;                              \
            } while (el_ < (round_ns));                                        \
            double v_ = mbps((size_t)(bytes_per_call) * calls_, el_);          \
            if (v_ > (best_mbps))                                              \
                (best_mbps) = v_;                                              \
        }                                                                      \
    } while (0)

/* jansson's figure, the baseline for the whole check too. */
static double jansson_mbps;

static void bench_json(cairn_bench_t *b, const char *ev, size_t len,
                       uint64_t round_ns)
{
    cairn_bench_progress(b, "guard.json.validate vs jansson");
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    if (cairn_guard_json_validate(NULL, ev, len, &r) != 0) {
        cairn_bench_skip(b, "guard.json.validate", "benchmark event invalid");
        cairn_guard_result_free(&r);
        return;
    }
    double ours, theirs;
    TIMED(ours, len, round_ns, {
        int rc = cairn_guard_json_validate(NULL, ev, len, &r);
        CAIRN_BENCH_KEEP(rc);
    });
    TIMED(theirs, len, round_ns, {
        json_error_t je;
        json_t *j = json_loadb(ev, len, JSON_REJECT_DUPLICATES, &je);
        CAIRN_BENCH_KEEP(j);
        json_decref(j);
    });
    jansson_mbps = theirs;
    cairn_bench_report(b, "guard.json.validate", "MB/s", ours,
                       "guard.json.jansson", theirs);
    cairn_guard_result_free(&r);
}

static void bench_scan(cairn_bench_t *b, const char *ev, size_t len,
                       uint64_t round_ns)
{
    cairn_bench_progress(b, "guard.scan: hyperscan vs pcre2 jit");
    struct cairn__patset *set = NULL;
    const char *text = cairn_guard_default_patterns();
    if (cairn__patset_parse(text, strlen(text), "default", &set, NULL, 0)) {
        cairn_bench_skip(b, "guard.scan.pcre2", "default set does not parse");
        cairn_bench_skip(b, "guard.scan.hyperscan",
                         "default set does not parse");
        return;
    }
    pcre2_code **re = calloc(set->n, sizeof *re);
    pcre2_match_data **md = calloc(set->n, sizeof *md);
    int ok = re && md;
    for (size_t k = 0; ok && k < set->n; k++) {
        uint32_t opts = 0;
        if (set->pats[k].hs_flags & HS_FLAG_CASELESS)
            opts |= PCRE2_CASELESS;
        if (set->pats[k].hs_flags & HS_FLAG_DOTALL)
            opts |= PCRE2_DOTALL;
        if (set->pats[k].hs_flags & HS_FLAG_MULTILINE)
            opts |= PCRE2_MULTILINE;
        int err;
        PCRE2_SIZE off;
        re[k] = pcre2_compile((PCRE2_SPTR)set->pats[k].expr,
                              PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
        ok = re[k] && pcre2_jit_compile(re[k], PCRE2_JIT_COMPLETE) == 0;
        if (ok)
            md[k] = pcre2_match_data_create_from_pattern(re[k], NULL);
        ok = ok && md[k];
    }
    cairn_guard_t *g = NULL;
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    if (!ok || cairn_guard_open(NULL, &g, NULL, 0) != 0) {
        cairn_bench_skip(b, "guard.scan.pcre2", "PCRE2 JIT unavailable");
        cairn_bench_skip(b, "guard.scan.hyperscan", "no PCRE2 baseline");
    } else {
        double pcre, hs;
        size_t n = set->n;
        TIMED(pcre, len, round_ns, {
            int hits = 0;
            for (size_t k = 0; k < n; k++)
                hits += pcre2_jit_match(re[k], (PCRE2_SPTR)ev, len, 0, 0,
                                        md[k], NULL) >= 0;
            CAIRN_BENCH_KEEP(hits);
        });
        TIMED(hs, len, round_ns, {
            int rc = cairn_guard_scan(g, "request", 7, ev, len, &r);
            CAIRN_BENCH_KEEP(rc);
        });
        /* The whole common case: validate + scan, allocation-free. */
        double check;
        TIMED(check, len, round_ns, {
            int rc = cairn_guard_check(g, "request", 7, ev, len,
                                       CAIRN_GUARD_ENC_AUTO,
                                       CAIRN_GUARD_CONTENT_JSON, &r);
            CAIRN_BENCH_KEEP(rc);
        });
        cairn_bench_report(b, "guard.scan.pcre2", "MB/s", pcre, NULL, 0);
        cairn_bench_report(b, "guard.scan.hyperscan", "MB/s", hs,
                           "guard.scan.pcre2", pcre);
        cairn_bench_report(b, "guard.check.event", "MB/s", check,
                           "guard.json.jansson", jansson_mbps);
    }
    for (size_t k = 0; k < set->n; k++) {
        if (md && md[k])
            pcre2_match_data_free(md[k]);
        if (re && re[k])
            pcre2_code_free(re[k]);
    }
    free(md);
    free(re);
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
    cairn__patset_free(set);
}

static void bench_inflate(cairn_bench_t *b, uint64_t round_ns)
{
    cairn_bench_progress(b, "guard.inflate.gzip vs zlib uncompress");
    /* 64 KiB of distinct NDJSON events: compresses about 6:1, like real
     * request bodies, well inside the default caps. */
    size_t cap = 64u << 10, len = 0;
    char *text = malloc(cap + 4096);
    for (unsigned seed = 1; len < cap - 2100; seed++) {
        len += make_event(text + len, 4096, seed * 2654435761u);
        text[len++] = '\n';
    }
    uLong zcap = compressBound(len);
    unsigned char *zl = malloc(zcap), *gzb = malloc(zcap + 32);
    unsigned char *out = malloc(len);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    uLongf zlen = zcap;
    int ok = text && zl && gzb && out &&
             compress2(zl, &zlen, (unsigned char *)text, len, 6) == Z_OK &&
             deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8,
                          Z_DEFAULT_STRATEGY) == Z_OK;
    size_t gzlen = 0;
    if (ok) {
        zs.next_in = (unsigned char *)text;
        zs.avail_in = (uInt)len;
        zs.next_out = gzb;
        zs.avail_out = (uInt)(zcap + 32);
        ok = deflate(&zs, Z_FINISH) == Z_STREAM_END;
        gzlen = zs.total_out;
        deflateEnd(&zs);
    }
    cairn_guard_t *g = NULL;
    cairn_guard_opts_t o;
    cairn_guard_opts_init(&o);
    o.patterns_path = CAIRN_GUARD_NO_PATTERNS;
    cairn_guard_result_t r = CAIRN_GUARD_RESULT_INIT;
    if (!ok || cairn_guard_open(&o, &g, NULL, 0) != 0 ||
        cairn_guard_decode(g, gzb, gzlen, CAIRN_GUARD_ENC_AUTO, &r) != 0 ||
        r.payload_len != len) {
        cairn_bench_skip(b, "guard.inflate.gzip", "setup failed");
    } else {
        double ours, theirs;
        TIMED(ours, len, round_ns, {
            int rc = cairn_guard_decode(g, gzb, gzlen, CAIRN_GUARD_ENC_AUTO,
                                        &r);
            CAIRN_BENCH_KEEP(rc);
        });
        TIMED(theirs, len, round_ns, {
            uLongf ol = len;
            int rc = uncompress(out, &ol, zl, zlen);
            CAIRN_BENCH_KEEP(rc);
        });
        cairn_bench_report(b, "guard.inflate.gzip", "MB/s", ours,
                           "guard.inflate.uncompress", theirs);
    }
    cairn_guard_result_free(&r);
    cairn_guard_close(g);
    free(out);
    free(gzb);
    free(zl);
    free(text);
}

void cairn_bench_suite_guard(cairn_bench_t *b);

void cairn_bench_suite_guard(cairn_bench_t *b)
{
    int quick = cairn_bench_quick(b);
    char ev[4096];
    size_t len = make_event(ev, sizeof ev, 17);
    /* 5 rounds per side: 1.5 s per result pair, 0.25 s with --quick. */
    uint64_t round_ns = quick ? 25000000u : 150000000u;
    bench_json(b, ev, len, round_ns);
    bench_scan(b, ev, len, round_ns);
    bench_inflate(b, round_ns);
}
