/* util.h — small helpers of the HTTP server: a growable string buffer,
 * JSON string escaping, RFC 3339 times, URL decoding. */
#ifndef CAIRN_SERVER_UTIL_H
#define CAIRN_SERVER_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "cairn/log.h"

typedef struct sb {
    char *data;
    size_t len, cap;
    int oom; /* an allocation failed; data is truncated */
} sb_t;

void sb_put(sb_t *b, const void *p, size_t n);
void sb_puts(sb_t *b, const char *s);
void sb_printf(sb_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Append a JSON string literal (quotes included) of n bytes of UTF-8. */
void sb_json_str(sb_t *b, const char *s, size_t n);
void sb_free(sb_t *b);

/* Append one event as a JSON object (the brief's event JSON). */
void sb_event_json(sb_t *b, const cairn_event_t *ev);

/* "2026-11-22T10:00:00.123456789Z" into buf[40]. */
void fmt_time(int64_t ns, char buf[40]);
/* Parse RFC 3339 ("Z" or "+hh:mm", fraction up to ns); 0 and *ns, or -1. */
int parse_time(const char *s, size_t n, int64_t *ns);

/* Decode %XX escapes (and '+' as space when query is set) into a new
 * NUL-terminated string; *len is its length.  NULL on a bad escape. */
char *url_decode(const char *s, size_t n, int query, size_t *len);

/* Parse an unsigned decimal; 0 ok, -1 not a number or overflow. */
int parse_u64(const char *s, uint64_t *out);

/* Base64 (RFC 4648) with libsodium; returns malloc'd output. */
char *b64_encode(const void *p, size_t n, size_t *outlen);
void *b64_decode(const char *s, size_t n, size_t *outlen);

#endif
