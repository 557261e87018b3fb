/*
 * guard_internal.h — what the files of src/guard share: the result
 * workspace, the parsed pattern set and the entry points between stages.
 * Not API; bench/bench_guard.c uses the pattern parser to compile the same
 * set with PCRE2.
 */
#ifndef CAIRN_GUARD_INTERNAL_H
#define CAIRN_GUARD_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <hs/hs.h>

#include "cairn/guard.h"

/* One entry of the duplicate-key table (json.c). */
struct cairn__json_key {
    uint64_t hash;     /* keyed hash of the decoded key */
    uint32_t object;   /* serial of the object holding the key */
    uint32_t offset;   /* offset of the key's first byte after the quote */
    uint32_t raw_len;  /* encoded bytes between the quotes */
    uint32_t escaped;  /* non-zero when the key has backslash escapes */
};

/* One open array/object of the JSON validator. */
struct cairn__json_level {
    uint32_t members;  /* members/elements so far */
    uint32_t object;   /* object serial, or UINT32_MAX for an array */
    uint32_t keys_base; /* keys[] length when this object was opened */
};

/* The workspace behind cairn_guard_result_t.ws_: grown on demand, reused. */
struct cairn__guard_ws {
    unsigned char *decode_buf; /* decoded layers, back to back */
    size_t decode_cap;
    unsigned char *scan_buf;   /* JSON text with escapes decoded */
    size_t scan_cap;
    struct cairn__json_level *levels;
    size_t levels_cap;
    struct cairn__json_key *keys;  /* keys of open objects, in order */
    size_t keys_cap;
    uint32_t *slots;           /* open-addressing index into keys, +1 */
    size_t slots_cap;          /* power of two */
    int slots_dirty;           /* entries may remain from a failed run */
    unsigned char hash_key[16]; /* SipHash key for the key table */
    int hash_keyed;
    unsigned char *key_tmp;    /* a decoded escaped key */
    size_t key_tmp_cap;
    hs_scratch_t *scratch;
    uint64_t scratch_serial;   /* pattern set the scratch was sized for */
};

/* Get (allocating on first use) the workspace of res. */
struct cairn__guard_ws *cairn__guard_ws(cairn_guard_result_t *res);
/* Make *buf hold at least need bytes (contents kept); 0 or -ENOMEM. */
int cairn__guard_reserve(void **buf, size_t *cap, size_t need, size_t elem);

/* Clear the outcome fields of res (not the workspace). */
void cairn__guard_result_reset(cairn_guard_result_t *res);
/* Set res->code etc.; returns code. */
int cairn__guard_fail(cairn_guard_result_t *res, int code, const char *limit,
                      uint64_t limit_value, uint64_t offset);

/* UTF-8: the shared validator (cairn__utf8_seq, cairn__utf8_valid_prefix). */
#include "internal/utf8.h"

/* ---- decode.c -------------------------------------------------------- */

/* Encoding indicated by the first bytes (CAIRN_GUARD_ENC_IDENTITY if
 * none). */
int cairn__guard_sniff(const unsigned char *p, size_t len);
/* out > ratio * in, computed exactly for any 64-bit values (ratio >= 1). */
int cairn__guard_ratio_exceeded(uint64_t out, uint64_t in, uint64_t ratio);
int cairn__guard_decode(const cairn_guard_opts_t *o, const void *body,
                        size_t len, int encoding, cairn_guard_result_t *res);

/* ---- json.c ---------------------------------------------------------- */

/* Validate; on success *has_escapes says whether any string had a
 * backslash escape (then cairn__json_unescape makes the scan text). */
int cairn__json_validate(const cairn_guard_opts_t *o, const unsigned char *p,
                         size_t len, cairn_guard_result_t *res,
                         int *has_escapes);
/* Copy valid JSON text to out (len bytes available) with every escape
 * decoded; returns the bytes written (<= len). */
size_t cairn__json_unescape(const unsigned char *p, size_t len,
                            unsigned char *out);

/* ---- patterns.c ------------------------------------------------------ */

enum { CAIRN__PAT_REJECT = 0, CAIRN__PAT_FLAG = 1 };

/* An event-type selector: exact, or a prefix when it ended with '*'. */
struct cairn__pat_type {
    const char *s;
    uint32_t len;
    uint32_t prefix;
};

struct cairn__pattern {
    char id[CAIRN_GUARD_PATTERN_ID_MAX + 1];
    int action;           /* CAIRN__PAT_REJECT or _FLAG */
    int severity;         /* enum cairn_guard_severity */
    unsigned hs_flags;    /* HS_FLAG_CASELESS / _DOTALL / _MULTILINE */
    char *expr;           /* the Hyperscan/PCRE expression, NUL-ended */
    struct cairn__pat_type *types; /* NULL: every type */
    size_t ntypes;
    unsigned line;        /* line in the pattern file */
};

/* A parsed (and, once published, compiled) pattern set.  Immutable once
 * published; freed by the reloader after a grace period (guard.c). */
struct cairn__patset {
    struct cairn__pattern *pats;
    size_t n;
    char *name;           /* file name or label, for messages */
    char *types_text;     /* storage for every pat_type.s */
    hs_database_t *db;    /* NULL when n == 0 */
    hs_scratch_t *proto;  /* scratch prototype cloned by new workspaces */
    uint64_t serial;      /* unique per set, process-wide */
};

/* Parse pattern text (name labels errors).  Fills *out; returns 0,
 * CAIRN_EGUARD_PATTERN_FILE or -ENOMEM with a message in err. */
int cairn__patset_parse(const char *text, size_t len, const char *name,
                        struct cairn__patset **out, char *err,
                        size_t err_len);
/* Compile a parsed set with Hyperscan; CAIRN_EGUARD_PATTERN_COMPILE names
 * the pattern and Hyperscan's message in err. */
int cairn__patset_compile(struct cairn__patset *set, char *err,
                          size_t err_len);
/* Load, parse and compile from a path (NULL: built-in default set). */
int cairn__patset_load(const char *path, struct cairn__patset **out,
                       char *err, size_t err_len);
void cairn__patset_free(struct cairn__patset *set);
/* Scan data with set; sets res (pattern_id/flagged) and returns 0 or
 * CAIRN_EGUARD_PATTERN. */
int cairn__patset_scan(const struct cairn__patset *set, const char *type,
                       size_t type_len, const unsigned char *data,
                       size_t len, cairn_guard_result_t *res);

/* The text of config/patterns.default (patterns_default.c). */
extern const char cairn__guard_default_patterns[];

#endif /* CAIRN_GUARD_INTERNAL_H */
