/*
 * http.c — the HTTP API of `cairn serve` on libmicrohttpd.
 *
 * DESIGN.  libmicrohttpd runs one thread per connection
 * (MHD_USE_THREAD_PER_CONNECTION), bounded by [server] max_connections,
 * rather than epoll with a pool sized to the cores, for two reasons.  A
 * `sync` append holds its request until the group fdatasync: with a pool
 * of 2 threads only 2 appends could be waiting at once, so each flush
 * would cover 2 requests, while with a thread per connection every
 * connection's append joins the same group commit (batch100 ingest is
 * 2.5x Redis that way, BENCHMARKS.md).  And a Server-Sent-Events stream
 * can block in its content callback waiting for events, which a pool
 * thread cannot do without suspending the connection.  The cost is a
 * thread (and its wake-up) per connection.  Slow clients are cut off by
 * request_timeout_secs (MHD's idle timeout), headers are bounded by
 * max_header_bytes (MHD's per-connection memory pool), bodies by
 * max_body_bytes (checked against Content-Length up front and while
 * reading).
 *
 * URLs reach the handler undecoded (an identity unescape callback): a
 * stream name may contain '/', so the path is split on the raw '/' and
 * each segment percent-decoded here; query values are decoded the same
 * way.
 *
 * Every request is authenticated (bearer tokens compared in constant time
 * on their BLAKE2b digests), rate limited per client address when
 * client_rate is set (GCRA on one 64-bit word per address bucket), routed,
 * counted in the metrics by route and status class, and timed.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "cairn/table.h"
#include "internal/clock.h"
#include "server/http.h"
#include "server/server.h"
#include "server/util.h"

static const char *const route_names[ROUTE_COUNT] = {
    "append",  "events", "stream_events", "stream", "stream_state",
    "breaker", "subscribe", "metrics", "metrics_json", "healthz",
    "readyz",  "not_found"};

const char *cairn__route_name(route_t r) { return route_names[r]; }

/* ---- responses ------------------------------------------------------------ */

static void count(server_t *s, req_t *r, unsigned status)
{
    unsigned cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    if (s->http_requests[r->route][cls])
        cairn_metrics_counter_inc(s->http_requests[r->route][cls]);
    if (s->http_latency[r->route])
        cairn_metrics_histogram_observe(
            s->http_latency[r->route],
            (double)(cairn__mono_ns() - r->start_ns) / 1e9);
}

enum MHD_Result cairn__respond(req_t *r, unsigned status, const char *ctype,
                               const char *body, size_t len,
                               const char *const *headers)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(resp, "Content-Type", ctype);
    for (const char *const *h = headers; h && h[0]; h += 2)
        MHD_add_response_header(resp, h[0], h[1]);
    enum MHD_Result ok = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    count(r->s, r, status);
    r->responded = 1;
    return ok;
}

enum MHD_Result cairn__respond_json(req_t *r, unsigned status, sb_t *b,
                                    const char *const *headers)
{
    if (b->oom) {
        sb_free(b);
        return cairn__error(r, 500, "out_of_memory", "response too large");
    }
    enum MHD_Result ok = cairn__respond(r, status, "application/json",
                                        b->data ? b->data : "", b->len,
                                        headers);
    sb_free(b);
    return ok;
}

/* "version_conflict" from CAIRN_EVERSION_CONFLICT, "eio" from -EIO. */
static void code_name(int err, char *buf, size_t len)
{
    const char *n = cairn_err_name(err);
    if (!strncmp(n, "CAIRN_E", 7))
        n += 7;
    size_t i = 0;
    for (; n[i] && i + 1 < len; i++)
        buf[i] = (char)tolower((unsigned char)n[i]);
    buf[i] = 0;
}

enum MHD_Result cairn__error_h(req_t *r, unsigned status, const char *code,
                               const char *const *headers, const char *fmt,
                               ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sb_t b = {0};
    sb_puts(&b, "{\"error\":{\"code\":");
    sb_json_str(&b, code, strlen(code));
    sb_puts(&b, ",\"message\":");
    sb_json_str(&b, msg, strlen(msg));
    sb_puts(&b, "}}\n");
    return cairn__respond_json(r, status, &b, headers);
}

enum MHD_Result cairn__error(req_t *r, unsigned status, const char *code,
                             const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cairn__error_h(r, status, code, NULL, "%s", msg);
}

unsigned cairn__status_of(int err)
{
    switch (err) {
    case CAIRN_EVERSION_CONFLICT:
    case CAIRN_EFSM_INVALID_TRANSITION:
    case CAIRN_EFSM_GUARD_REJECTED:
        return 409;
    case CAIRN_EPAYLOAD_TOO_LARGE:
    case CAIRN_EBATCH_TOO_LARGE:
        return 413;
    case CAIRN_ETHROTTLED:
        return 429;
    case CAIRN_EBREAKER_OPEN:
    case CAIRN_ELOG_FULL:
    case CAIRN_EREAD_ONLY:
    case CAIRN_ETABLE_FULL:
    case CAIRN_ECLOSED:
        return 503;
    case CAIRN_ENOT_FOUND:
        return 404;
    case CAIRN_EEXPIRED:
        return 410;
    case CAIRN_EGUARD_JSON_SYNTAX:
        return 400; /* not JSON at all: malformed, not a content guard */
    default:
        break;
    }
    unsigned g = (unsigned)cairn_guard_http_status(err);
    if (g)
        return g;
    if (err <= -1000 && err > -1100)
        return 400; /* the event model: a malformed request */
    return 500;
}

enum MHD_Result cairn__error_code(req_t *r, int err, uint64_t retry_after_ns,
                                  const char *detail)
{
    char code[64], ra[32], ns[32];
    code_name(err, code, sizeof code);
    unsigned status = cairn__status_of(err);
    const char *headers[5] = {NULL};
    if (status == 429 || status == 503) {
        /* Retry-After is whole seconds, rounded up; the exact wait is in
         * Cairn-Retry-After-Ns. */
        uint64_t secs = retry_after_ns ? (retry_after_ns + 999999999u) /
                                             1000000000u
                                       : 1;
        snprintf(ra, sizeof ra, "%llu", (unsigned long long)secs);
        headers[0] = "Retry-After";
        headers[1] = ra;
        if (retry_after_ns) {
            snprintf(ns, sizeof ns, "%llu", (unsigned long long)retry_after_ns);
            headers[2] = "Cairn-Retry-After-Ns";
            headers[3] = ns;
        }
    }
    if (detail && *detail)
        return cairn__error_h(r, status, code, headers, "%s: %s",
                              cairn_strerror(err), detail);
    return cairn__error_h(r, status, code, headers, "%s", cairn_strerror(err));
}

/* ---- auth --------------------------------------------------------------------- */

void cairn__token_digest(const char *secret, size_t len,
                         unsigned char out[32])
{
    crypto_generichash(out, 32, (const unsigned char *)secret, len, NULL, 0);
}

/* The role of the bearer token, 0 when none or wrong; every configured
 * token is compared, in constant time, whatever matched. */
static int token_role(server_t *s, struct MHD_Connection *c)
{
    const char *h =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    const char *secret = h + 7;
    unsigned char d[32];
    cairn__token_digest(secret, strlen(secret), d);
    int role = 0;
    pthread_rwlock_rdlock(&s->auth_lock);
    for (unsigned i = 0; i < s->ntokens; i++) {
        int same = sodium_memcmp(d, s->tokens[i].digest, 32) == 0;
        if (same && s->tokens[i].role > role)
            role = s->tokens[i].role;
    }
    pthread_rwlock_unlock(&s->auth_lock);
    return role > CAIRN_ROLE_ADMIN ? CAIRN_ROLE_ADMIN : role;
}

static int route_role(route_t r)
{
    switch (r) {
    case ROUTE_HEALTHZ:
    case ROUTE_READYZ:
        return 0;
    case ROUTE_APPEND:
        return CAIRN_ROLE_APPEND;
    case ROUTE_BREAKER:
        return CAIRN_ROLE_ADMIN;
    default:
        return CAIRN_ROLE_READ;
    }
}

/* ---- per-client rate limit (GCRA) ------------------------------------------- */

static int client_allowed(server_t *s, struct MHD_Connection *c,
                          uint64_t *retry_ns)
{
    if (!s->cfg->client_rate)
        return 1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return 1;
    const struct sockaddr *sa = ci->client_addr;
    const void *key = sa;
    size_t klen = 0;
    if (sa->sa_family == AF_INET) {
        key = &((const struct sockaddr_in *)sa)->sin_addr;
        klen = 4;
    } else if (sa->sa_family == AF_INET6) {
        key = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        klen = 16;
    }
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, klen, s->client_key);
    uint64_t slot;
    memcpy(&slot, h, 8);
    _Atomic uint64_t *tat = &s->client_tat[slot & (s->client_slots - 1)];
    const uint64_t T = 1000000000u / s->cfg->client_rate;
    const uint64_t tau = T * (s->cfg->client_burst ? s->cfg->client_burst - 1
                                                   : 0);
    uint64_t now = cairn__mono_ns();
    uint64_t cur = atomic_load_explicit(tat, memory_order_relaxed);
    for (;;) {
        uint64_t next = (cur > now ? cur : now) + T;
        if (next - tau > now + T) {
            /* next - T - tau > now: the emission would come too early */
            *retry_ns = next - T - tau - now;
            return 0;
        }
        if (atomic_compare_exchange_weak_explicit(
                tat, &cur, next, memory_order_relaxed, memory_order_relaxed))
            return 1;
    }
}

/* ---- routing ---------------------------------------------------------------- */

/* Split "/v1/streams/<stream>[/<tail>]"; the stream segment is decoded. */
static int parse_stream_path(const char *url, req_t *r, const char **tail)
{
    const char *p = url + strlen("/v1/streams/");
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    r->stream = url_decode(p, n, 0, &r->stream_len);
    *tail = slash ? slash : "";
    return r->stream ? 0 : -1;
}

static route_t route_of(const char *method, const char *url, req_t *r,
                        int *bad_method)
{
    *bad_method = 0;
    const int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (!strcmp(url, "/healthz"))
        return get ? ROUTE_HEALTHZ : (*bad_method = 1, ROUTE_HEALTHZ);
    if (!strcmp(url, "/readyz"))
        return get ? ROUTE_READYZ : (*bad_method = 1, ROUTE_READYZ);
    if (!strcmp(url, "/metrics"))
        return get ? ROUTE_METRICS : (*bad_method = 1, ROUTE_METRICS);
    if (!strcmp(url, "/metrics.json"))
        return get ? ROUTE_METRICS_JSON : (*bad_method = 1, ROUTE_METRICS_JSON);
    if (!strcmp(url, "/v1/events"))
        return get ? ROUTE_EVENTS : (*bad_method = 1, ROUTE_EVENTS);
    if (!strcmp(url, "/v1/subscribe"))
        return get ? ROUTE_SUBSCRIBE : (*bad_method = 1, ROUTE_SUBSCRIBE);
    if (!strncmp(url, "/v1/streams/", 12) && url[12]) {
        const char *tail;
        if (parse_stream_path(url, r, &tail) < 0)
            return ROUTE_NOT_FOUND;
        if (!*tail)
            return get ? ROUTE_STREAM : (*bad_method = 1, ROUTE_STREAM);
        if (!strcmp(tail, "/events")) {
            if (!strcmp(method, "POST"))
                return ROUTE_APPEND;
            return get ? ROUTE_STREAM_EVENTS
                       : (*bad_method = 1, ROUTE_STREAM_EVENTS);
        }
        if (!strcmp(tail, "/state"))
            return get ? ROUTE_STREAM_STATE
                       : (*bad_method = 1, ROUTE_STREAM_STATE);
        if (!strcmp(tail, "/breaker"))
            return !strcmp(method, "PUT") ? ROUTE_BREAKER
                                          : (*bad_method = 1, ROUTE_BREAKER);
    }
    return ROUTE_NOT_FOUND;
}

const char *cairn__arg(req_t *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

char *cairn__arg_decoded(req_t *r, const char *key, size_t *len)
{
    const char *v = cairn__arg(r, key);
    if (!v)
        return NULL;
    return url_decode(v, strlen(v), 1, len);
}

/* The identity unescaper: decoding happens per path segment (above). */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    req_t *r = *con_cls;
    if (!r)
        return;
    free(r->body);
    free(r->stream);
    free(r);
    *con_cls = NULL;
}

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind,
                                       const char *key, const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn,
                               const char *url, const char *method,
                               const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    (void)version;
    server_t *s = cls;
    req_t *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        r->s = s;
        r->conn = conn;
        r->start_ns = cairn__mono_ns();
        int bad_method;
        r->route = route_of(method, url, r, &bad_method);
        /* max_header_bytes: libmicrohttpd's per-connection pool bounds
         * memory; this bounds what a request may declare. */
        size_t hdr = strlen(url);
        MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_size,
                                  &hdr);
        if (hdr > s->cfg->max_header_bytes)
            return cairn__error(r, 431, "headers_too_large",
                                "request headers of %zu bytes exceed "
                                "max_header_bytes (%u)",
                                hdr, s->cfg->max_header_bytes);
        if (r->route == ROUTE_NOT_FOUND)
            return cairn__error(r, 404, "not_found", "no route %s %s", method,
                                url);
        if (bad_method)
            return cairn__error(r, 405, "method_not_allowed",
                                "%s is not allowed on %s", method, url);
        uint64_t retry;
        /* Health probes are never rate limited, like they never need a
         * token: an orchestrator must always be able to ask. */
        if (r->route != ROUTE_HEALTHZ && r->route != ROUTE_READYZ &&
            !client_allowed(s, conn, &retry)) {
            char ra[24], ns[24];
            snprintf(ra, sizeof ra, "%llu",
                     (unsigned long long)((retry + 999999999u) / 1000000000u));
            snprintf(ns, sizeof ns, "%llu", (unsigned long long)retry);
            const char *h[] = {"Retry-After", ra, "Cairn-Retry-After-Ns", ns,
                               NULL};
            return cairn__error_h(r, 429, "client_throttled", h,
                                  "client_rate exceeded");
        }
        int need = route_role(r->route);
        if (need && (s->ntokens || !s->loopback)) {
            int have = token_role(s, conn);
            if (!have)
                return cairn__error(r, 401, "unauthorized",
                                    "a valid bearer token is required");
            if (have < need)
                return cairn__error(r, 403, "forbidden",
                                    "the token's role is too low for %s",
                                    route_names[r->route]);
        }
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        uint64_t clen;
        if (cl && parse_u64(cl, &clen) == 0 && clen > s->cfg->max_body_bytes)
            return cairn__error(r, 413, "body_too_large",
                                "body of %llu bytes exceeds max_body_bytes "
                                "(%llu)",
                                (unsigned long long)clen,
                                (unsigned long long)s->cfg->max_body_bytes);
        return MHD_YES;
    }
    if (r->responded) {
        *upload_size = 0; /* discard the rest of a refused body */
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->len + *upload_size > s->cfg->max_body_bytes) {
            *upload_size = 0;
            return cairn__error(r, 413, "body_too_large",
                                "body exceeds max_body_bytes (%llu)",
                                (unsigned long long)s->cfg->max_body_bytes);
        }
        if (r->len + *upload_size > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + *upload_size)
                cap *= 2;
            char *b = realloc(r->body, cap);
            if (!b)
                return MHD_NO;
            r->body = b;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload, *upload_size);
        r->len += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    switch (r->route) {
    case ROUTE_HEALTHZ:
        return cairn__respond_lit(r, 200, "{\"status\":\"ok\"}\n");
    case ROUTE_READYZ:
        return cairn__api_readyz(r);
    case ROUTE_METRICS:
    case ROUTE_METRICS_JSON:
        return cairn__api_metrics(r);
    default:
        break;
    }
    if (!atomic_load(&s->ready))
        return cairn__error_h(r, 503, "recovering",
                              (const char *const[]){"Retry-After", "1", NULL},
                              "the log is still being recovered");
    switch (r->route) {
    case ROUTE_APPEND:
        return cairn__api_append(r);
    case ROUTE_EVENTS:
        return cairn__api_events(r);
    case ROUTE_STREAM_EVENTS:
        return cairn__api_stream_events(r);
    case ROUTE_STREAM:
        return cairn__api_stream(r);
    case ROUTE_STREAM_STATE:
        return cairn__api_stream_state(r);
    case ROUTE_BREAKER:
        return cairn__api_breaker(r);
    case ROUTE_SUBSCRIBE:
        return cairn__api_subscribe(r);
    default:
        return cairn__error(r, 404, "not_found", "no route");
    }
}

/* ---- start / stop --------------------------------------------------------------- */

static int parse_listen(const char *listen, struct sockaddr_storage *ss,
                        socklen_t *sl, int *loopback)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host)
        return -1;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = 0;
    uint64_t port;
    if (parse_u64(colon + 1, &port) < 0 || port > 65535)
        return -1;
    char *h = host;
    if (h[0] == '[') { /* [::1]:7070 */
        h++;
        h[strlen(h) - 1] = 0;
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (!strcmp(h, "localhost"))
        h = "127.0.0.1";
    if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *sl = sizeof *a4;
        *loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
        return 0;
    }
    if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *sl = sizeof *a6;
        *loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
        return 0;
    }
    return -1;
}

int cairn__http_start(server_t *s, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (parse_listen(s->cfg->listen, &ss, &sl, &s->loopback) < 0) {
        snprintf(err, errlen, "server.listen: cannot parse '%s' (HOST:PORT)",
                 s->cfg->listen);
        return -EINVAL;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                     MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)s->cfg->request_timeout_secs,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)s->cfg->max_header_bytes + 4096,
        MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL, MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "cannot listen on %s: %s", s->cfg->listen,
                 strerror(errno ? errno : EADDRINUSE));
        return -EADDRINUSE;
    }
    return 0;
}

void cairn__http_stop(server_t *s)
{
    if (!s->daemon)
        return;
    MHD_quiesce_daemon(s->daemon); /* stop accepting */
    MHD_stop_daemon(s->daemon);    /* in-flight requests finish */
    s->daemon = NULL;
}
