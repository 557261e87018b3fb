/*
 * guard.c — the guard handle: options, the published pattern set and its
 * replacement, the check pipeline (decode, validate, scan), results and
 * their messages, and the HTTP status of each guard code.
 *
 * DESIGN (pattern reload).  The current set is one atomic pointer.  Readers
 * (checks) never block and never write the set; a reload builds and
 * compiles the new set first, swaps the pointer, then waits for a grace
 * period before freeing the old set, like userspace RCU with two reader
 * counters:
 *
 *   reader: e = load(epoch); active[e & 1] += 1; if load(epoch) != e, undo
 *           and retry; set = load(current); ...scan...; active[e & 1] -= 1
 *   reload (serialised by reload_lock): old = exchange(current, new);
 *           e = epoch; epoch = e + 1; wait until active[e & 1] == 0; free old
 *
 * All of these are seq_cst, so each reader's increment and its re-check of
 * epoch are ordered against the reloader's epoch store and its reads of the
 * counter.  A reader that saw epoch == e before the flip is counted in
 * active[e & 1] before the reloader starts waiting, and the wait covers it;
 * a reader that saw e + 1 loaded `current` after the exchange and holds the
 * new set.  A reader counted under the parity before that (e - 1) was
 * waited for by the previous reload, which finished before this one began.
 * New readers use the other counter, so the wait ends once the readers
 * that might hold the old set have left.  The counters sit on their own
 * cache lines; a check costs two uncontended-in-the-common-case atomic
 * additions.
 *
 * Each result carries its own Hyperscan scratch (cloned from the set's
 * prototype, grown with hs_alloc_scratch when a reload brings a database
 * that needs more), so concurrent checks share nothing writable.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "guard/guard_internal.h"

struct cairn_guard {
    cairn_guard_opts_t opts;
    _Atomic(struct cairn__patset *) current;
    pthread_mutex_t reload_lock;
    _Alignas(64) atomic_uint_fast64_t epoch;
    _Alignas(64) atomic_long active0;
    _Alignas(64) atomic_long active1;
};

static atomic_long *active_of(cairn_guard_t *g, uint64_t e)
{
    return (e & 1) ? &g->active1 : &g->active0;
}

/* Enter a read-side section; returns the set to use until leave_set. */
static struct cairn__patset *enter_set(cairn_guard_t *g, uint64_t *slot)
{
    for (;;) {
        uint64_t e = atomic_load(&g->epoch);
        atomic_fetch_add(active_of(g, e), 1);
        /* Re-check: a reload that flipped the epoch in between may already
         * be waiting on the other counter and not see this one. */
        if (atomic_load(&g->epoch) == e) {
            *slot = e;
            return atomic_load(&g->current);
        }
        atomic_fetch_sub(active_of(g, e), 1);
    }
}

static void leave_set(cairn_guard_t *g, uint64_t slot)
{
    /* Orders every read of the set before the reloader's free. */
    atomic_fetch_sub(active_of(g, slot), 1);
}

void cairn_guard_opts_init(cairn_guard_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->max_input_bytes = CAIRN_GUARD_MAX_INPUT_BYTES_DEFAULT;
    o->max_decompressed_bytes = CAIRN_GUARD_MAX_DECOMPRESSED_BYTES_DEFAULT;
    o->max_compression_ratio = CAIRN_GUARD_MAX_COMPRESSION_RATIO_DEFAULT;
    o->max_decode_layers = CAIRN_GUARD_MAX_DECODE_LAYERS_DEFAULT;
    o->max_json_depth = CAIRN_GUARD_MAX_JSON_DEPTH_DEFAULT;
    o->max_json_string_bytes = CAIRN_GUARD_MAX_JSON_STRING_BYTES_DEFAULT;
    o->max_json_members = CAIRN_GUARD_MAX_JSON_MEMBERS_DEFAULT;
    o->patterns_path = NULL;
}

static int opts_valid(const cairn_guard_opts_t *o, char *err, size_t err_len)
{
    const char *bad = NULL;
    if (o->max_input_bytes < 1 ||
        o->max_input_bytes > CAIRN_GUARD_MAX_INPUT_BYTES_CAP)
        bad = "max_input_bytes";
    else if (o->max_decompressed_bytes < 1 ||
             o->max_decompressed_bytes >
                 CAIRN_GUARD_MAX_DECOMPRESSED_BYTES_CAP)
        bad = "max_decompressed_bytes";
    else if (o->max_compression_ratio < 1 ||
             o->max_compression_ratio > CAIRN_GUARD_MAX_COMPRESSION_RATIO_CAP)
        bad = "max_compression_ratio";
    else if (o->max_decode_layers > CAIRN_GUARD_MAX_DECODE_LAYERS_CAP)
        bad = "max_decode_layers";
    else if (o->max_json_depth < 1 ||
             o->max_json_depth > CAIRN_GUARD_MAX_JSON_DEPTH_CAP)
        bad = "max_json_depth";
    else if (o->max_json_string_bytes < 1 ||
             o->max_json_string_bytes > CAIRN_GUARD_MAX_JSON_STRING_BYTES_CAP)
        bad = "max_json_string_bytes";
    else if (o->max_json_members < 1 ||
             o->max_json_members > CAIRN_GUARD_MAX_JSON_MEMBERS_CAP)
        bad = "max_json_members";
    if (!bad)
        return 0;
    if (err && err_len)
        snprintf(err, err_len, "[limits] %s is out of range", bad);
    return CAIRN_EBAD_OPTION;
}

int cairn_guard_open(const cairn_guard_opts_t *opts, cairn_guard_t **out,
                     char *err, size_t err_len)
{
    cairn_guard_opts_t def;
    if (!opts) {
        cairn_guard_opts_init(&def);
        opts = &def;
    }
    *out = NULL;
    int rc = opts_valid(opts, err, err_len);
    if (rc)
        return rc;
    if (sodium_init() < 0)
        return -ENOMEM;
    cairn_guard_t *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->opts = *opts;
    g->opts.patterns_path = NULL; /* borrowed: not kept */
    struct cairn__patset *set = NULL;
    rc = cairn__patset_load(opts->patterns_path, &set, err, err_len);
    if (rc) {
        free(g);
        return rc;
    }
    pthread_mutex_init(&g->reload_lock, NULL);
    atomic_init(&g->current, set);
    atomic_init(&g->epoch, 0);
    atomic_init(&g->active0, 0);
    atomic_init(&g->active1, 0);
    *out = g;
    return 0;
}

void cairn_guard_close(cairn_guard_t *g)
{
    if (!g)
        return;
    cairn__patset_free(atomic_load(&g->current));
    pthread_mutex_destroy(&g->reload_lock);
    free(g);
}

static void publish(cairn_guard_t *g, struct cairn__patset *set)
{
    pthread_mutex_lock(&g->reload_lock);
    struct cairn__patset *old = atomic_exchange(&g->current, set);
    uint64_t e = atomic_load(&g->epoch);
    atomic_store(&g->epoch, e + 1);
    /* Grace period: readers that may hold `old` all count in active[e]. */
    while (atomic_load(active_of(g, e)) != 0) {
        struct timespec ts = {0, 50 * 1000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_unlock(&g->reload_lock);
    cairn__patset_free(old);
}

int cairn_guard_reload_patterns(cairn_guard_t *g, const char *path, char *err,
                                size_t err_len)
{
    struct cairn__patset *set = NULL;
    int rc = cairn__patset_load(path, &set, err, err_len);
    if (rc)
        return rc;
    publish(g, set);
    return 0;
}

int cairn_guard_reload_patterns_text(cairn_guard_t *g, const char *text,
                                     size_t len, const char *name, char *err,
                                     size_t err_len)
{
    struct cairn__patset *set = NULL;
    int rc = cairn__patset_parse(text, len, name, &set, err, err_len);
    if (rc)
        return rc;
    if ((rc = cairn__patset_compile(set, err, err_len)) != 0) {
        cairn__patset_free(set);
        return rc;
    }
    publish(g, set);
    return 0;
}

const char *cairn_guard_default_patterns(void)
{
    return cairn__guard_default_patterns;
}

size_t cairn_guard_pattern_count(cairn_guard_t *g)
{
    uint64_t slot;
    size_t n = enter_set(g, &slot)->n;
    leave_set(g, slot);
    return n;
}

/* ---- results and workspace ------------------------------------------- */

struct cairn__guard_ws *cairn__guard_ws(cairn_guard_result_t *res)
{
    if (!res->ws_)
        res->ws_ = calloc(1, sizeof *res->ws_);
    return res->ws_;
}

int cairn__guard_reserve(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap * 2 > need ? *cap * 2 : need;
    if (ncap > SIZE_MAX / elem)
        return -ENOMEM;
    void *nb = realloc(*buf, ncap * elem);
    if (!nb)
        return -ENOMEM;
    *buf = nb;
    *cap = ncap;
    return 0;
}

void cairn__guard_result_reset(cairn_guard_result_t *res)
{
    res->code = 0;
    res->limit = NULL;
    res->limit_value = 0;
    res->bytes_in = 0;
    res->bytes_out = 0;
    res->offset = 0;
    res->encoding = CAIRN_GUARD_ENC_IDENTITY;
    res->layers = 0;
    res->payload = NULL;
    res->payload_len = 0;
    res->pattern_id[0] = 0;
    res->pattern_severity = 0;
    res->nflagged = 0;
}

int cairn__guard_fail(cairn_guard_result_t *res, int code, const char *limit,
                      uint64_t limit_value, uint64_t offset)
{
    res->code = code;
    res->limit = limit;
    res->limit_value = limit_value;
    res->offset = offset;
    return code;
}

void cairn_guard_result_init(cairn_guard_result_t *res)
{
    memset(res, 0, sizeof *res);
}

void cairn_guard_result_free(cairn_guard_result_t *res)
{
    struct cairn__guard_ws *ws = res->ws_;
    if (ws) {
        free(ws->decode_buf);
        free(ws->scan_buf);
        free(ws->levels);
        free(ws->keys);
        free(ws->slots);
        free(ws->key_tmp);
        hs_free_scratch(ws->scratch);
        free(ws);
    }
    memset(res, 0, sizeof *res);
}

/* ---- the pipeline ---------------------------------------------------- */

int cairn_guard_decode(cairn_guard_t *g, const void *body, size_t len,
                       int encoding, cairn_guard_result_t *res)
{
    cairn__guard_result_reset(res);
    return cairn__guard_decode(&g->opts, body, len, encoding, res);
}

int cairn_guard_scan(cairn_guard_t *g, const char *type, size_t type_len,
                     const void *data, size_t len, cairn_guard_result_t *res)
{
    cairn__guard_result_reset(res);
    uint64_t slot;
    struct cairn__patset *set = enter_set(g, &slot);
    int rc = cairn__patset_scan(set, type, type_len, data, len, res);
    leave_set(g, slot);
    return rc;
}

int cairn_guard_check(cairn_guard_t *g, const char *type, size_t type_len,
                      const void *body, size_t len, int encoding, int content,
                      cairn_guard_result_t *res)
{
    cairn__guard_result_reset(res);
    int rc = cairn__guard_decode(&g->opts, body, len, encoding, res);
    if (rc)
        return rc;
    const unsigned char *scan = res->payload;
    size_t scan_len = res->payload_len;

    if (content == CAIRN_GUARD_CONTENT_JSON) {
        int escapes = 0;
        rc = cairn__json_validate(&g->opts, scan, scan_len, res, &escapes);
        if (rc)
            return rc;
        if (escapes) {
            /* Scan the text as its strings decode, or "\u202e" and "\/"
             * would walk past byte patterns. */
            struct cairn__guard_ws *ws = res->ws_;
            rc = cairn__guard_reserve((void **)&ws->scan_buf, &ws->scan_cap,
                                      scan_len, 1);
            if (rc)
                return cairn__guard_fail(res, rc, NULL, 0, 0);
            scan_len = cairn__json_unescape(scan, scan_len, ws->scan_buf);
            scan = ws->scan_buf;
        }
    } else if (content == CAIRN_GUARD_CONTENT_TEXT) {
        size_t bad;
        if (cairn_guard_utf8_check(scan, scan_len, &bad) != 0)
            return cairn__guard_fail(res, CAIRN_EGUARD_UTF8, NULL, 0, bad);
    } else if (content != CAIRN_GUARD_CONTENT_BINARY) {
        return cairn__guard_fail(res, CAIRN_EBAD_OPTION, NULL, 0, 0);
    }

    uint64_t slot;
    struct cairn__patset *set = enter_set(g, &slot);
    rc = cairn__patset_scan(set, type, type_len, scan, scan_len, res);
    leave_set(g, slot);
    return rc;
}

/* ---- messages and HTTP ----------------------------------------------- */

static const char *severity_name(int s)
{
    static const char *const names[] = {"low", "medium", "high", "critical"};
    return s >= 0 && s < 4 ? names[s] : "unknown";
}

int cairn_guard_result_format(const cairn_guard_result_t *r, char *buf,
                              size_t len)
{
    const char *enc = cairn_guard_encoding_name(r->encoding);
    unsigned long long in = r->bytes_in, out = r->bytes_out;
    unsigned long long lim = r->limit_value, off = r->offset;
    switch (r->code) {
    case 0:
        return snprintf(buf, len,
                        "payload accepted (%s, %u layer(s) decoded, %llu "
                        "bytes, %u pattern(s) flagged)",
                        enc, r->layers, (unsigned long long)r->payload_len,
                        r->nflagged);
    case CAIRN_EGUARD_TOO_LARGE:
        return snprintf(buf, len, "payload exceeds %s=%llu bytes",
                        r->limit ? r->limit : "max_input_bytes", lim);
    case CAIRN_EGUARD_BOMB_RATIO:
    case CAIRN_EGUARD_BOMB_SIZE:
        return snprintf(buf, len,
                        "decompression exceeded %s=%llu (%s, layer %u): %llu "
                        "bytes in, %llu bytes out",
                        r->limit, lim, enc, r->layers, in, out);
    case CAIRN_EGUARD_TOO_MANY_LAYERS:
        return snprintf(buf, len,
                        "compressed layers exceed max_decode_layers=%llu "
                        "(outermost %s): %llu bytes in, %llu bytes out",
                        lim, enc, in, out);
    case CAIRN_EGUARD_WINDOW_TOO_LARGE:
        return snprintf(buf, len,
                        "zstd frame needs a window larger than 2^%llu bytes "
                        "(%s, layer %u): %llu bytes in, %llu bytes out",
                        lim, r->limit, r->layers, in, out);
    case CAIRN_EGUARD_UNSUPPORTED_ENCODING:
        return snprintf(buf, len,
                        "unsupported compression encoding %s (layer %u)",
                        r->layers ? "inside a decoded layer" : enc,
                        r->layers + 1);
    case CAIRN_EGUARD_CORRUPT_ENCODING:
        return snprintf(buf, len,
                        "%s data is corrupt or truncated (layer %u): %llu "
                        "bytes in, %llu bytes out",
                        enc, r->layers, in, out);
    case CAIRN_EGUARD_JSON_DEPTH:
    case CAIRN_EGUARD_JSON_STRING:
    case CAIRN_EGUARD_JSON_MEMBERS:
        return snprintf(buf, len, "JSON exceeds %s=%llu at byte %llu",
                        r->limit, lim, off);
    case CAIRN_EGUARD_JSON_SYNTAX:
        return snprintf(buf, len, "payload is not valid JSON at byte %llu",
                        off);
    case CAIRN_EGUARD_JSON_DUPLICATE_KEY:
        return snprintf(buf, len, "JSON object repeats the key at byte %llu",
                        off);
    case CAIRN_EGUARD_UTF8:
        return snprintf(buf, len, "payload is not valid UTF-8 at byte %llu",
                        off);
    case CAIRN_EGUARD_PATTERN:
        return snprintf(buf, len,
                        "payload matched blocking pattern '%s' (severity %s) "
                        "ending at byte %llu",
                        r->pattern_id, severity_name(r->pattern_severity),
                        off);
    case -ENOMEM:
        return snprintf(buf, len, "guard: out of memory");
    default:
        return snprintf(buf, len, "guard check failed with code %d",
                        r->code);
    }
}

int cairn_guard_http_status(int code)
{
    switch (code) {
    case CAIRN_EGUARD_TOO_LARGE:
    case CAIRN_EGUARD_BOMB_RATIO:
    case CAIRN_EGUARD_BOMB_SIZE:
    case CAIRN_EGUARD_TOO_MANY_LAYERS:
    case CAIRN_EGUARD_WINDOW_TOO_LARGE:
        return 413;
    case CAIRN_EGUARD_UNSUPPORTED_ENCODING:
        return 415;
    case CAIRN_EGUARD_CORRUPT_ENCODING:
        return 400;
    case CAIRN_EGUARD_JSON_DEPTH:
    case CAIRN_EGUARD_JSON_SYNTAX:
    case CAIRN_EGUARD_JSON_STRING:
    case CAIRN_EGUARD_JSON_MEMBERS:
    case CAIRN_EGUARD_JSON_DUPLICATE_KEY:
    case CAIRN_EGUARD_UTF8:
    case CAIRN_EGUARD_PATTERN:
        return 422;
    case CAIRN_EGUARD_PATTERN_COMPILE:
    case CAIRN_EGUARD_PATTERN_FILE:
        return 500;
    default:
        return 0;
    }
}
