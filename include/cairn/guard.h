/*
 * guard.h — payload guards: bounded decompression, JSON and UTF-8
 * validation, and multi-pattern scanning with Hyperscan.
 *
 * A guard (cairn_guard_t) holds options and a compiled pattern set.  It is
 * opened once, shared by every thread, and its pattern set can be replaced
 * while other threads check payloads (cairn_guard_reload_patterns).
 *
 * A result (cairn_guard_result_t) is both the outcome of one check and the
 * caller's reusable workspace: the decode buffer, the JSON validator's stack
 * and duplicate-key table, and a Hyperscan scratch live in it.  Keep one
 * result per thread (or per connection) and reuse it: after the first few
 * calls, checking a small uncompressed JSON event that matches no pattern
 * allocates nothing.  A result must not be used by two threads at once.
 *
 * Every function returns 0 or a negative code (CAIRN_EGUARD_* from
 * cairn.h, or -ENOMEM / -errno).  docs/GUARD.md is the long form of this
 * header: the pattern file format, the limits and the HTTP mapping.
 */
#ifndef CAIRN_GUARD_H
#define CAIRN_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "cairn.h"
#include "limits.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Content encodings: what the caller declares, or what sniffing found. */
enum cairn_guard_encoding {
    CAIRN_GUARD_ENC_AUTO = 0,     /* declared: sniff magic bytes */
    CAIRN_GUARD_ENC_IDENTITY = 1, /* not compressed */
    CAIRN_GUARD_ENC_GZIP = 2,     /* RFC 1952, several members allowed */
    CAIRN_GUARD_ENC_ZLIB = 3,     /* RFC 1950; HTTP "deflate" */
    CAIRN_GUARD_ENC_DEFLATE_RAW = 4, /* RFC 1951 (only when declared) */
    CAIRN_GUARD_ENC_ZSTD = 5,     /* RFC 8878 */
    /* Recognised but never decoded (CAIRN_EGUARD_UNSUPPORTED_ENCODING): */
    CAIRN_GUARD_ENC_BROTLI = 6,   /* only when declared ("br"): no magic */
    CAIRN_GUARD_ENC_BZIP2 = 7,
    CAIRN_GUARD_ENC_XZ = 8,
    CAIRN_GUARD_ENC_ZIP = 9,
    CAIRN_GUARD_ENC_LZ4 = 10,
    CAIRN_GUARD_ENC_7Z = 11,
    CAIRN_GUARD_ENC_COMPRESS = 12, /* Unix compress (.Z, "compress") */
    CAIRN_GUARD_ENC_UNKNOWN = 13   /* declared, not a coding we know */
};

/* What the decoded payload must be. */
enum cairn_guard_content {
    CAIRN_GUARD_CONTENT_BINARY = 0, /* any bytes: decode and scan only */
    CAIRN_GUARD_CONTENT_TEXT = 1,   /* strict UTF-8 */
    CAIRN_GUARD_CONTENT_JSON = 2    /* one JSON value (RFC 8259), UTF-8 */
};

/* Pattern severities, in the order of the pattern file's words. */
enum cairn_guard_severity {
    CAIRN_GUARD_SEV_LOW = 0,
    CAIRN_GUARD_SEV_MEDIUM = 1,
    CAIRN_GUARD_SEV_HIGH = 2,
    CAIRN_GUARD_SEV_CRITICAL = 3
};

/* Pass as patterns_path for a guard without patterns. */
#define CAIRN_GUARD_NO_PATTERNS ""

typedef struct cairn_guard_opts {
    /* [limits] keys, see include/cairn/limits.h for defaults and caps. */
    uint64_t max_input_bytes;
    uint64_t max_decompressed_bytes;
    uint32_t max_compression_ratio;
    uint32_t max_decode_layers;
    uint32_t max_json_depth;
    uint32_t max_json_string_bytes;
    uint32_t max_json_members;
    /* Non-zero: JSON objects may repeat a key (default 0: rejected with
     * CAIRN_EGUARD_JSON_DUPLICATE_KEY). */
    int allow_duplicate_keys;
    /* Non-zero: bzip2, xz, zip, lz4, 7z, compress and declared brotli are
     * passed through undecoded as opaque bytes (and still scanned) instead
     * of being refused with CAIRN_EGUARD_UNSUPPORTED_ENCODING. */
    int allow_unsupported_encoding;
    /* Pattern file to compile: NULL for the built-in default set (the text
     * of config/patterns.default), CAIRN_GUARD_NO_PATTERNS for none.
     * Borrowed during cairn_guard_open only. */
    const char *patterns_path;
} cairn_guard_opts_t;

typedef struct cairn_guard cairn_guard_t;
struct cairn__guard_ws;

/*
 * The outcome of a check, and the workspace reused by the next check.
 * Initialise with CAIRN_GUARD_RESULT_INIT or cairn_guard_result_init(),
 * release with cairn_guard_result_free().  Every field is read-only for the
 * caller and is rewritten by each call that takes the result.
 */
typedef struct cairn_guard_result {
    int code;              /* 0, or the CAIRN_E* code the call returned */
    /* The limit that tripped ("max_decompressed_bytes", ...; static
     * storage) and its configured value; NULL/0 when no limit tripped. */
    const char *limit;
    uint64_t limit_value;
    uint64_t bytes_in;     /* input bytes consumed by decoding so far */
    uint64_t bytes_out;    /* bytes produced by decoding, all layers */
    /* Byte offset in the decoded payload of a JSON/UTF-8 error, or the end
     * of the rejecting pattern's match (in the scanned text, which for
     * JSON with escapes is the unescaped text). */
    uint64_t offset;
    int encoding;          /* outermost encoding (enum cairn_guard_encoding) */
    unsigned layers;       /* compression layers decoded */
    /* The payload to store: the decoded bytes.  Points into the caller's
     * body when nothing was decoded, else into this result's buffer; valid
     * until the next call with this result or cairn_guard_result_free(). */
    const void *payload;
    size_t payload_len;
    /* The rejecting pattern (CAIRN_EGUARD_PATTERN), else "". */
    char pattern_id[CAIRN_GUARD_PATTERN_ID_MAX + 1];
    int pattern_severity;
    /* Flag-only patterns that matched: nflagged counts all of them, the
     * first CAIRN_GUARD_FLAGS_MAX ids are copied. */
    unsigned nflagged;
    char flagged[CAIRN_GUARD_FLAGS_MAX][CAIRN_GUARD_PATTERN_ID_MAX + 1];
    struct cairn__guard_ws *ws_; /* private */
} cairn_guard_result_t;

#define CAIRN_GUARD_RESULT_INIT {0}

/* Fill opts with the defaults from limits.h and the built-in patterns. */
CAIRN_EXPORT void cairn_guard_opts_init(cairn_guard_opts_t *opts);

/*
 * Validate opts, compile the pattern set and return a guard in *out.
 * opts is copied.  Returns CAIRN_EBAD_OPTION for a limit out of range,
 * CAIRN_EGUARD_PATTERN_FILE for a malformed or unreadable pattern file,
 * CAIRN_EGUARD_PATTERN_COMPILE when Hyperscan refuses a pattern, -ENOMEM.
 * err (may be NULL) receives one line naming the cause: the file and line,
 * the pattern id and Hyperscan's message.
 */
CAIRN_EXPORT int cairn_guard_open(const cairn_guard_opts_t *opts,
                                  cairn_guard_t **out, char *err,
                                  size_t err_len);

/* Free a guard (NULL is a no-op).  No check may be running on it. */
CAIRN_EXPORT void cairn_guard_close(cairn_guard_t *guard);

/*
 * Compile a new pattern set and swap it in.  path as for opts.patterns_path.
 * Checks running concurrently finish with the set they started with; the
 * old set is freed once they have (this call waits for them, so never call
 * it from a thread that is inside a check).  Reloads are serialised.  On
 * error the current set stays in force.  Errors as cairn_guard_open.
 */
CAIRN_EXPORT int cairn_guard_reload_patterns(cairn_guard_t *guard,
                                             const char *path, char *err,
                                             size_t err_len);
/* The same from pattern text in memory (copied); name labels errors. */
CAIRN_EXPORT int cairn_guard_reload_patterns_text(cairn_guard_t *guard,
                                                  const char *text,
                                                  size_t len,
                                                  const char *name, char *err,
                                                  size_t err_len);

/* The built-in default pattern set (the text of config/patterns.default);
 * static storage. */
CAIRN_EXPORT const char *cairn_guard_default_patterns(void);

/* Patterns in the current set.  Thread-safe. */
CAIRN_EXPORT size_t cairn_guard_pattern_count(cairn_guard_t *guard);

/*
 * Check one payload: decode (bounded), validate as content says, scan the
 * patterns that apply to the event type.  Thread-safe; res is per thread.
 *
 * type/type_len: the event type, used only to select patterns (borrowed).
 * body/len: the payload as received (borrowed; must stay valid while
 *   res->payload may point into it; NULL only when len is 0).  body must
 *   not point into res's own buffer: to check events parsed out of a body
 *   decoded with cairn_guard_decode, use a second result.
 * encoding: a declared enum cairn_guard_encoding, or CAIRN_GUARD_ENC_AUTO
 *   to sniff magic bytes.
 * content: enum cairn_guard_content.
 *
 * Returns 0 when the payload passes (res->payload is the decoded payload
 * and res->flagged the flag-only matches), else the CAIRN_EGUARD_* code,
 * also in res->code, with the details in res (cairn_guard_result_format).
 */
CAIRN_EXPORT int cairn_guard_check(cairn_guard_t *guard, const char *type,
                                   size_t type_len, const void *body,
                                   size_t len, int encoding, int content,
                                   cairn_guard_result_t *res);

/* The decoding step of cairn_guard_check alone (for an HTTP body that is
 * then parsed into several events).  Same contract for body and res. */
CAIRN_EXPORT int cairn_guard_decode(cairn_guard_t *guard, const void *body,
                                    size_t len, int encoding,
                                    cairn_guard_result_t *res);

/* The JSON step alone: validate text as one JSON value under opts' limits
 * (NULL: defaults).  Sets res->code, res->offset, res->limit. */
CAIRN_EXPORT int cairn_guard_json_validate(const cairn_guard_opts_t *opts,
                                           const void *text, size_t len,
                                           cairn_guard_result_t *res);

/* The scanning step alone, over bytes exactly as given. */
CAIRN_EXPORT int cairn_guard_scan(cairn_guard_t *guard, const char *type,
                                  size_t type_len, const void *data,
                                  size_t len, cairn_guard_result_t *res);

/* Release a result's workspace; the result can be reused afterwards. */
CAIRN_EXPORT void cairn_guard_result_init(cairn_guard_result_t *res);
CAIRN_EXPORT void cairn_guard_result_free(cairn_guard_result_t *res);

/*
 * One line describing res, e.g. "decompression exceeded
 * max_compression_ratio=100 (gzip, layer 1): 84 bytes in, 65600 bytes out".
 * snprintf semantics: returns the length the full message needs.
 */
CAIRN_EXPORT int cairn_guard_result_format(const cairn_guard_result_t *res,
                                           char *buf, size_t len);

/* 1 when [p, p+len) is strict UTF-8 (no overlongs, surrogates, truncated
 * sequences or code points above U+10FFFF), else 0.  Thread-safe. */
CAIRN_EXPORT int cairn_guard_utf8_valid(const void *p, size_t len);
/* The same, returning 0 or CAIRN_EGUARD_UTF8 with the offset of the first
 * bad byte in *bad_offset (may be NULL). */
CAIRN_EXPORT int cairn_guard_utf8_check(const void *p, size_t len,
                                        size_t *bad_offset);

/*
 * Parse one HTTP Content-Encoding value ("gzip", "x-gzip", "deflate",
 * "zstd", "br", "identity", ...; case-insensitive, surrounding blanks
 * ignored).  A list ("gzip, zstd") yields its last coding, the one applied
 * last and decoded first; inner layers are sniffed.  Unknown codings give
 * CAIRN_GUARD_ENC_UNKNOWN (refused as unsupported by a check).  Returns 0,
 * or CAIRN_EGUARD_TOO_MANY_LAYERS when the list is longer than
 * CAIRN_GUARD_MAX_DECODE_LAYERS_CAP.
 */
CAIRN_EXPORT int cairn_guard_encoding_parse(const char *value, size_t len,
                                            int *encoding);
/* "gzip", "zstd", ...; static storage. */
CAIRN_EXPORT const char *cairn_guard_encoding_name(int encoding);

/*
 * The HTTP status for a guard code: 413 too large / bomb / layers / window,
 * 415 unsupported encoding, 400 corrupt encoding, 422 JSON, UTF-8 and
 * pattern rejections, 500 for pattern file and compile errors (a server
 * misconfiguration).  0 for 0 and for codes that are not guard codes.
 */
CAIRN_EXPORT int cairn_guard_http_status(int code);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_GUARD_H */
