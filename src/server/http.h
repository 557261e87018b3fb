/* http.h — one HTTP request of `cairn serve`, and the route handlers. */
#ifndef CAIRN_SERVER_HTTP_H
#define CAIRN_SERVER_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "server/server.h"
#include "server/util.h"

typedef struct req {
    server_t *s;
    struct MHD_Connection *conn;
    route_t route;
    uint64_t start_ns;
    char *body;          /* the request body as received */
    size_t len, cap;
    char *stream;        /* decoded {stream} path segment, or NULL */
    size_t stream_len;
    int responded;       /* a response is queued (e.g. 413 mid-upload) */
} req_t;

const char *cairn__route_name(route_t r);

/* Queue a response (body copied); counts it in the metrics. */
enum MHD_Result cairn__respond(req_t *r, unsigned status, const char *ctype,
                               const char *body, size_t len,
                               const char *const *headers);
/* A JSON string literal as the body (its length taken by sizeof). */
#define cairn__respond_lit(r, status, lit)                                     \
    cairn__respond((r), (status), "application/json", (lit),                   \
                   sizeof(lit) - 1, NULL)

/* Queue b as application/json and free it. */
enum MHD_Result cairn__respond_json(req_t *r, unsigned status, sb_t *b,
                                    const char *const *headers);
/* {"error":{"code","message"}}; headers is a NULL-ended name/value list. */
enum MHD_Result cairn__error(req_t *r, unsigned status, const char *code,
                             const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
enum MHD_Result cairn__error_h(req_t *r, unsigned status, const char *code,
                               const char *const *headers, const char *fmt,
                               ...) __attribute__((format(printf, 5, 6)));
/* The error response for a cairn code: status from cairn__status_of,
 * Retry-After on 429/503. */
enum MHD_Result cairn__error_code(req_t *r, int err, uint64_t retry_after_ns,
                                  const char *detail);
unsigned cairn__status_of(int err);

/* Query argument, raw / percent-decoded (malloc'd, NUL-terminated). */
const char *cairn__arg(req_t *r, const char *key);
char *cairn__arg_decoded(req_t *r, const char *key, size_t *len);

/* The read filter of the query string: from_seq, from_time (RFC 3339),
 * stream or prefix, type=a,b (at most 64), all percent-decoded; shared by
 * GET /v1/events and GET /v1/subscribe. */
typedef struct qfilter {
    cairn_read_filter_t f;
    char *stream;    /* owned */
    char *types_buf; /* owned; types point into it */
    const char *types[64];
    size_t type_lens[64];
} qfilter_t;

/* 0, or -1 with a reason in why (the caller answers 400).  Free q with
 * cairn__qfilter_free in either case. */
int cairn__query_filter(req_t *r, qfilter_t *q, char *why, size_t wl);
void cairn__qfilter_free(qfilter_t *q);

void cairn__token_digest(const char *secret, size_t len,
                         unsigned char out[32]);

enum MHD_Result cairn__api_append(req_t *r);
enum MHD_Result cairn__api_events(req_t *r);
enum MHD_Result cairn__api_stream_events(req_t *r);
enum MHD_Result cairn__api_stream(req_t *r);
enum MHD_Result cairn__api_stream_state(req_t *r);
enum MHD_Result cairn__api_breaker(req_t *r);
enum MHD_Result cairn__api_subscribe(req_t *r);
enum MHD_Result cairn__api_metrics(req_t *r);
enum MHD_Result cairn__api_readyz(req_t *r);

#endif
