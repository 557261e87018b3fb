/*
 * client.c — `cairn append`, `cairn read [--follow]` and `cairn state`:
 * HTTP clients of `cairn serve` built on libcurl (see client.h).
 *
 * append  POST /v1/streams/{stream}/events with one JSON event
 *         {"type","data"} (built with jansson, so --data is checked and the
 *         type escaped), or the NDJSON lines of stdin as one batch
 *         (application/x-ndjson); Cairn-Expected-Version and
 *         Cairn-Durability headers from the flags.  Prints the 201 body.
 * read    GET /v1/events with the filters as query parameters, printing
 *         the NDJSON body and following Cairn-Next-Seq until a page comes
 *         back empty or --limit events were printed.
 * read --follow
 *         GET /v1/subscribe (Server-Sent Events).  The stream is parsed as
 *         it arrives: `data:` lines of one event are joined, a blank line
 *         prints the event as one NDJSON line, `id:` is remembered, lines
 *         starting with ':' (heartbeats) are skipped.  When the connection
 *         drops after it was established, the client reconnects with
 *         Last-Event-ID (and from_seq = that id + 1) after a short backoff,
 *         so no event is printed twice or skipped.  SIGINT/SIGTERM end it
 *         with status 0.
 * state   GET /v1/streams/{stream}, printed as JSON.
 *
 * Stream names and query values are percent-encoded byte by byte (only
 * RFC 3986 unreserved characters stay), so '/', ':', '?', spaces and UTF-8
 * reach the server as one path segment or one value.  The URL and token
 * default to $CAIRN_URL and $CAIRN_TOKEN, so a secret need not appear on
 * a command line (where `ps` shows it).
 */
#include "cli/client.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli/cli.h"

/* Bodies read from the server or stdin are bounded so a runaway peer or
 * pipe cannot take all memory. */
#define BODY_MAX ((size_t)1 << 30)
#define URL_MAX 8192

/* ---- small helpers ---------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static void
report(const cairn_client_io_t *io, const char *what, const char *fmt, ...)
{
    va_list ap;
    fprintf(io->err, "cairn: %s: ", what);
    va_start(ap, fmt);
    vfprintf(io->err, fmt, ap);
    va_end(ap);
    fputc('\n', io->err);
}

int cairn__client_escape(const char *in, size_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            if (n + 1 >= outlen)
                return -1;
            out[n++] = (char)c;
        } else {
            if (n + 3 >= outlen)
                return -1;
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    if (n >= outlen)
        return -1;
    out[n] = '\0';
    return (int)n;
}

/* Append "name=escaped(value)" to the query in out. */
static int add_param(char *out, size_t outlen, size_t *n, const char *name,
                     const char *value)
{
    int w = snprintf(out + *n, outlen - *n, "%s%s=", strchr(out, '?') ? "&" : "?",
                     name);
    if (w < 0 || (size_t)w >= outlen - *n)
        return -1;
    *n += (size_t)w;
    int e = cairn__client_escape(value, strlen(value), out + *n, outlen - *n);
    if (e < 0)
        return -1;
    *n += (size_t)e;
    return 0;
}

/* The base URL without trailing slashes; checked for a scheme. */
static int base_url(const char *url, char *out, size_t outlen)
{
    if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8))
        return -1;
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    if (n >= outlen)
        return -1;
    memcpy(out, url, n);
    out[n] = '\0';
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* ---- option parsing ------------------------------------------------------------ */

struct opt {
    const char *name;   /* without the leading "--" */
    const char **value; /* takes a value; NULL for a switch */
    int *flag;          /* a switch */
};

/* --name VALUE, --name=VALUE, switches, and up to max_pos positional
 * arguments.  Returns 0, or 2 with a reason in err. */
static int parse_opts(int argc, char **argv, const struct opt *opts,
                      const char **pos, int max_pos, int *npos, char *err,
                      size_t errlen)
{
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h"))
            a = "--help";
        if (strncmp(a, "--", 2) || !a[2]) {
            if (*npos == max_pos) {
                snprintf(err, errlen, "unexpected argument '%s'", a);
                return 2;
            }
            pos[(*npos)++] = a;
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt *o = opts;
        for (; o->name; o++)
            if (strlen(o->name) == len && !strncmp(o->name, name, len))
                break;
        if (!o->name) {
            snprintf(err, errlen, "unknown option '%s'", a);
            return 2;
        }
        if (!o->value) {
            if (eq) {
                snprintf(err, errlen, "option '--%s' takes no value", o->name);
                return 2;
            }
            *o->flag = 1;
            continue;
        }
        if (eq)
            *o->value = eq + 1;
        else if (i + 1 < argc)
            *o->value = argv[++i];
        else {
            snprintf(err, errlen, "option '--%s' needs a value", o->name);
            return 2;
        }
    }
    return 0;
}

static int usage_error(const cairn_client_io_t *io, const char *cmd,
                       const char *why)
{
    report(io, cmd, "%s (see cairn %s --help)", why, cmd);
    return 2;
}

/* ---- HTTP ------------------------------------------------------------------------- */

struct response {
    long status;
    char *body;
    size_t len, cap;
    int overflow;
    int has_next_seq;
    uint64_t next_seq;
    char errbuf[CURL_ERROR_SIZE];
};

static int body_append(struct response *r, const char *p, size_t n)
{
    if (r->len + n + 1 > BODY_MAX) {
        r->overflow = 1;
        return -1;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b)
            return -1;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, p, n);
    r->len += n;
    r->body[r->len] = '\0';
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct response *r = ud;
    return body_append(r, p, size * n) ? 0 : size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct response *r = ud;
    size_t len = size * n;
    static const char name[] = "Cairn-Next-Seq:";
    if (len > sizeof name - 1 && !strncasecmp(p, name, sizeof name - 1)) {
        char v[32];
        size_t i = sizeof name - 1, k = 0;
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        while (i < len && k < sizeof v - 1 && isdigit((unsigned char)p[i]))
            v[k++] = p[i++];
        v[k] = '\0';
        r->has_next_seq = parse_u64(v, &r->next_seq) == 0;
    }
    return len;
}

static void response_reset(struct response *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* Common headers: auth, and no "Expect: 100-continue" round trip. */
static struct curl_slist *base_headers(const char *token)
{
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    if (h && token && *token) {
        char line[1024];
        snprintf(line, sizeof line, "Authorization: Bearer %s", token);
        struct curl_slist *t = curl_slist_append(h, line);
        if (!t) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = t;
    }
    return h;
}

static int add_header(struct curl_slist **h, const char *fmt, const char *v)
{
    char line[512];
    snprintf(line, sizeof line, fmt, v);
    struct curl_slist *t = curl_slist_append(*h, line);
    if (!t)
        return -1;
    *h = t;
    return 0;
}

static CURL *client_handle(void)
{
    static int initialised;
    if (!initialised) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT))
            return NULL;
        initialised = 1;
    }
    return curl_easy_init();
}

/* One request; the body lands in r.  Returns the CURLcode. */
static CURLcode http_request(CURL *c, const char *method, const char *url,
                             struct curl_slist *headers, const char *body,
                             size_t body_len, struct response *r)
{
    response_reset(r);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (!strcmp(method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)body_len);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    return rc;
}

/* Report a failed transfer or a non-2xx status; 0 when it succeeded. */
static int check_response(const cairn_client_io_t *io, const char *cmd,
                          const char *url, CURLcode rc, struct response *r)
{
    if (rc != CURLE_OK) {
        if (r->overflow)
            report(io, cmd, "%s: reply larger than %zu bytes", url, BODY_MAX);
        else
            report(io, cmd, "%s: %s", url,
                   r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
        return 1;
    }
    if (r->status >= 200 && r->status < 300)
        return 0;
    json_t *doc = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    json_t *e = doc ? json_object_get(doc, "error") : NULL;
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code || msg) {
        report(io, cmd, "HTTP %ld %s: %s", r->status, code ? code : "error",
               msg ? msg : "(no message)");
    } else {
        /* Not cairn's error shape: the first line of whatever came back. */
        size_t n = r->body ? strcspn(r->body, "\r\n") : 0;
        if (n > 200)
            n = 200;
        report(io, cmd, "HTTP %ld%s%.*s", r->status, n ? ": " : "", (int)n,
               r->body ? r->body : "");
    }
    json_decref(doc);
    return 1;
}

static void print_body(FILE *out, const struct response *r)
{
    if (r->len) {
        fwrite(r->body, 1, r->len, out);
        if (r->body[r->len - 1] != '\n')
            fputc('\n', out);
    }
    fflush(out);
}

/* ---- append ------------------------------------------------------------------------ */

static void append_help(FILE *f)
{
    fprintf(f,
        "usage: cairn append [--url URL] [--token T] --stream S --type T\n"
        "                    [--data JSON] [--expected-version V]\n"
        "                    [--durability D]\n"
        "       cairn append [--url URL] [--token T] --stream S < events.ndjson\n"
        "\n"
        "  Appends one event {\"type\":T,\"data\":JSON} to stream S (data\n"
        "  defaults to {}), or, without --type, the NDJSON events on stdin\n"
        "  (one {\"type\":...,\"data\":...} per line) as one atomic batch.\n"
        "  Prints the server's reply: {\"stream\",\"first_seq\",\"last_seq\",\"version\"}.\n"
        "\n"
        "  --url URL               server (default $CAIRN_URL or %s)\n"
        "  --token T               bearer token (default $CAIRN_TOKEN)\n"
        "  --expected-version V    N, any, no-stream or exists (409 if not)\n"
        "  --durability D          memory, os or sync (server default if unset)\n"
        "\n"
        "  Exit status: 0 appended, 1 refused or unreachable, 2 usage error.\n",
        CAIRN_CLIENT_DEFAULT_URL);
}

static int valid_expected_version(const char *v)
{
    uint64_t n;
    return !strcmp(v, "any") || !strcmp(v, "no-stream") ||
           !strcmp(v, "exists") || parse_u64(v, &n) == 0;
}

/* Read all of `in`, check every non-blank line is a JSON object with a
 * string "type", and return the lines joined by '\n' in *body. */
static int read_ndjson(const cairn_client_io_t *io, char **body, size_t *len,
                       unsigned *nevents)
{
    struct response buf;
    memset(&buf, 0, sizeof buf);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, io->in)) > 0)
        if (body_append(&buf, chunk, n)) {
            report(io, "append", "stdin: more than %zu bytes", BODY_MAX);
            free(buf.body);
            return 1;
        }
    if (ferror(io->in)) {
        report(io, "append", "stdin: %s", strerror(errno));
        free(buf.body);
        return 1;
    }
    struct response out;
    memset(&out, 0, sizeof out);
    unsigned line = 0, count = 0;
    for (size_t p = 0; p < buf.len;) {
        size_t end = p;
        while (end < buf.len && buf.body[end] != '\n')
            end++;
        line++;
        size_t e = end;
        while (e > p && isspace((unsigned char)buf.body[e - 1]))
            e--;
        size_t s = p;
        while (s < e && isspace((unsigned char)buf.body[s]))
            s++;
        if (s < e) {
            json_error_t je;
            json_t *ev = json_loadb(buf.body + s, e - s, 0, &je);
            const char *why = NULL;
            if (!ev)
                why = je.text;
            else if (!json_is_object(ev))
                why = "not a JSON object";
            else if (!json_is_string(json_object_get(ev, "type")))
                why = "no string \"type\"";
            if (why) {
                report(io, "append", "stdin line %u: %s", line, why);
                json_decref(ev);
                free(buf.body);
                free(out.body);
                return 1;
            }
            json_decref(ev);
            if (body_append(&out, buf.body + s, e - s) ||
                body_append(&out, "\n", 1)) {
                report(io, "append", "stdin: out of memory");
                free(buf.body);
                free(out.body);
                return 1;
            }
            count++;
        }
        p = end + 1;
    }
    free(buf.body);
    if (!count) {
        report(io, "append", "no events on stdin (or give --type)");
        free(out.body);
        return 1;
    }
    *body = out.body;
    *len = out.len;
    *nevents = count;
    return 0;
}

int cairn__client_append(int argc, char **argv, const cairn_client_io_t *io)
{
    const char *url = getenv("CAIRN_URL"), *token = getenv("CAIRN_TOKEN");
    const char *stream = NULL, *type = NULL, *data = NULL, *expected = NULL,
               *durability = NULL;
    int help = 0, npos;
    const struct opt opts[] = {
        {"url", &url, NULL},       {"token", &token, NULL},
        {"stream", &stream, NULL}, {"type", &type, NULL},
        {"data", &data, NULL},     {"expected-version", &expected, NULL},
        {"durability", &durability, NULL}, {"help", NULL, &help},
        {NULL, NULL, NULL},
    };
    char why[256];
    if (parse_opts(argc, argv, opts, NULL, 0, &npos, why, sizeof why))
        return usage_error(io, "append", why);
    if (help) {
        append_help(io->out);
        return 0;
    }
    if (!url)
        url = CAIRN_CLIENT_DEFAULT_URL;
    char base[URL_MAX];
    if (base_url(url, base, sizeof base))
        return usage_error(io, "append", "--url must start with http:// or "
                                         "https://");
    if (!stream || !*stream)
        return usage_error(io, "append", "--stream is required");
    if (type && !*type)
        return usage_error(io, "append", "--type must not be empty");
    if (data && !type)
        return usage_error(io, "append", "--data needs --type (without "
                                         "--type, events come from stdin)");
    if (expected && !valid_expected_version(expected))
        return usage_error(io, "append", "--expected-version must be a "
                                         "number, any, no-stream or exists");
    if (durability && strcmp(durability, "memory") &&
        strcmp(durability, "os") && strcmp(durability, "sync"))
        return usage_error(io, "append", "--durability must be memory, os "
                                         "or sync");

    char *body = NULL;
    size_t body_len = 0;
    const char *content_type;
    if (type) {
        json_t *payload;
        if (data) {
            json_error_t je;
            payload = json_loads(data, JSON_DECODE_ANY, &je);
            if (!payload) {
                snprintf(why, sizeof why, "--data is not JSON: %s", je.text);
                return usage_error(io, "append", why);
            }
        } else {
            payload = json_object();
        }
        json_t *ev = json_pack("{s:s, s:o}", "type", type, "data", payload);
        body = ev ? json_dumps(ev, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(ev);
        if (!body) {
            report(io, "append", "cannot encode the event (is --type UTF-8?)");
            return 1;
        }
        body_len = strlen(body);
        content_type = "Content-Type: application/json";
    } else {
        unsigned nevents;
        if (read_ndjson(io, &body, &body_len, &nevents))
            return 1;
        content_type = "Content-Type: application/x-ndjson";
    }

    char enc[3 * 255 * 4 + 1], full[URL_MAX];
    int rc = 1;
    if (cairn__client_escape(stream, strlen(stream), enc, sizeof enc) < 0 ||
        snprintf(full, sizeof full, "%s/v1/streams/%s/events", base, enc) >=
            (int)sizeof full) {
        free(body);
        return usage_error(io, "append", "--stream is too long");
    }
    struct curl_slist *h = base_headers(token);
    CURL *c = client_handle();
    struct response r;
    memset(&r, 0, sizeof r);
    if (!h || !c || add_header(&h, "%s", content_type) ||
        add_header(&h, "Accept: %s", "application/json") ||
        (expected && add_header(&h, "Cairn-Expected-Version: %s", expected)) ||
        (durability && add_header(&h, "Cairn-Durability: %s", durability))) {
        report(io, "append", "out of memory");
    } else {
        CURLcode cc = http_request(c, "POST", full, h, body, body_len, &r);
        rc = check_response(io, "append", full, cc, &r);
        if (rc == 0)
            print_body(io->out, &r);
    }
    response_reset(&r);
    curl_slist_free_all(h);
    if (c)
        curl_easy_cleanup(c);
    free(body);
    return rc;
}

/* ---- read ------------------------------------------------------------------------- */

static void read_help(FILE *f)
{
    fprintf(f,
        "usage: cairn read [--url URL] [--token T]\n"
        "                  [--from-seq N | --from-time RFC3339]\n"
        "                  [--stream S | --prefix P] [--type T[,T...]]\n"
        "                  [--limit N] [--follow]\n"
        "\n"
        "  Prints events as NDJSON, one JSON event per line, oldest first,\n"
        "  paging through the log until its end (or N events).  With\n"
        "  --follow, keeps printing new events as they are appended (Server-\n"
        "  Sent Events) until interrupted or N events were printed; a dropped\n"
        "  connection is resumed after the last event printed.\n"
        "\n"
        "  --url URL        server (default $CAIRN_URL or %s)\n"
        "  --token T        bearer token (default $CAIRN_TOKEN)\n"
        "  --from-seq N     start at global sequence number N\n"
        "  --from-time T    start at time T (2026-11-22T10:00:00Z)\n"
        "  --stream S       only stream S;  --prefix P  streams starting with P\n"
        "  --type T,...     only these event types\n"
        "  --limit N        stop after N events\n"
        "\n"
        "  Exit status: 0 success, 1 refused or unreachable, 2 usage error.\n",
        CAIRN_CLIENT_DEFAULT_URL);
}

int cairn__client_parse_read(int argc, char **argv, cairn_read_args_t *a,
                             char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    a->url = getenv("CAIRN_URL");
    a->token = getenv("CAIRN_TOKEN");
    const char *limit = NULL;
    const struct opt opts[] = {
        {"url", &a->url, NULL},
        {"token", &a->token, NULL},
        {"from-seq", &a->from_seq, NULL},
        {"from-time", &a->from_time, NULL},
        {"stream", &a->stream, NULL},
        {"prefix", &a->prefix, NULL},
        {"type", &a->types, NULL},
        {"limit", &limit, NULL},
        {"follow", NULL, &a->follow},
        {"help", NULL, &a->help},
        {NULL, NULL, NULL},
    };
    int npos;
    if (parse_opts(argc, argv, opts, NULL, 0, &npos, err, errlen))
        return 2;
    if (a->help)
        return 0;
    if (!a->url)
        a->url = CAIRN_CLIENT_DEFAULT_URL;
    char base[URL_MAX];
    uint64_t n;
    const char *why = NULL;
    if (base_url(a->url, base, sizeof base))
        why = "--url must start with http:// or https://";
    else if (a->from_seq && a->from_time)
        why = "--from-seq and --from-time exclude each other";
    else if (a->stream && a->prefix)
        why = "--stream and --prefix exclude each other";
    else if (a->from_seq && parse_u64(a->from_seq, &n))
        why = "--from-seq must be a number";
    else if (a->from_time && !*a->from_time)
        why = "--from-time must not be empty";
    else if (a->stream && !*a->stream)
        why = "--stream must not be empty";
    else if (a->types && !*a->types)
        why = "--type must not be empty";
    else if (limit && (parse_u64(limit, &a->limit) || a->limit == 0))
        why = "--limit must be a number above 0";
    if (why) {
        snprintf(err, errlen, "%s", why);
        return 2;
    }
    return 0;
}

int cairn__client_read_url(const cairn_read_args_t *a, int follow,
                           uint64_t from_seq, uint64_t page_limit, char *out,
                           size_t outlen)
{
    if (base_url(a->url, out, outlen))
        return -1;
    size_t n = strlen(out);
    const char *path = follow ? "/v1/subscribe" : "/v1/events";
    if (n + strlen(path) >= outlen)
        return -1;
    memcpy(out + n, path, strlen(path) + 1);
    n += strlen(path);
    char num[24];
    if (from_seq) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)from_seq);
        if (add_param(out, outlen, &n, "from_seq", num))
            return -1;
    } else if ((a->from_seq && add_param(out, outlen, &n, "from_seq",
                                         a->from_seq)) ||
               (a->from_time && add_param(out, outlen, &n, "from_time",
                                          a->from_time))) {
        return -1;
    }
    if ((a->stream && add_param(out, outlen, &n, "stream", a->stream)) ||
        (a->prefix && add_param(out, outlen, &n, "prefix", a->prefix)) ||
        (a->types && add_param(out, outlen, &n, "type", a->types)))
        return -1;
    if (page_limit) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)page_limit);
        if (add_param(out, outlen, &n, "limit", num))
            return -1;
    }
    return (int)n;
}

/* Print the first `room` events (non-blank lines) of an NDJSON page;
 * returns how many were printed. */
static uint64_t print_page(FILE *out, const struct response *r, uint64_t room)
{
    uint64_t printed = 0;
    for (size_t p = 0; p < r->len && (!room || printed < room);) {
        const char *nl = memchr(r->body + p, '\n', r->len - p);
        size_t end = nl ? (size_t)(nl - r->body) : r->len;
        size_t e = end;
        if (e > p && r->body[e - 1] == '\r')
            e--;
        if (e > p) {
            fwrite(r->body + p, 1, e - p, out);
            fputc('\n', out);
            printed++;
        }
        p = end + 1;
    }
    fflush(out);
    return printed;
}

static int read_pages(const cairn_read_args_t *a, const cairn_client_io_t *io)
{
    struct curl_slist *h = base_headers(a->token);
    CURL *c = client_handle();
    struct response r;
    memset(&r, 0, sizeof r);
    int rc = 1;
    if (!h || !c || add_header(&h, "Accept: %s", "application/x-ndjson")) {
        report(io, "read", "out of memory");
        goto out;
    }
    uint64_t printed = 0, next = 0;
    for (;;) {
        char url[URL_MAX];
        uint64_t room = a->limit ? a->limit - printed : 0;
        if (cairn__client_read_url(a, 0, next, room, url, sizeof url) < 0) {
            report(io, "read", "the request URL is too long");
            goto out;
        }
        CURLcode cc = http_request(c, "GET", url, h, NULL, 0, &r);
        if (check_response(io, "read", url, cc, &r))
            goto out;
        uint64_t got = print_page(io->out, &r, room);
        printed += got;
        /* The end: an empty page, no next page, the limit, or a server
         * that does not move forward. */
        if (!got || !r.has_next_seq || (a->limit && printed >= a->limit) ||
            r.next_seq <= next)
            break;
        next = r.next_seq;
    }
    rc = 0;
out:
    response_reset(&r);
    curl_slist_free_all(h);
    if (c)
        curl_easy_cleanup(c);
    return rc;
}

/* ---- read --follow (Server-Sent Events) -------------------------------------------- */

static volatile sig_atomic_t follow_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    follow_stop = 1;
}

struct sse {
    FILE *out;
    CURL *c;
    long status;           /* of the current connection, once known */
    struct response error; /* body of a non-200 reply */
    struct response line;  /* the line being received */
    struct response data;  /* data: lines of the event being received */
    char pending_id[32];   /* id: of the event being received */
    char last_id[32];      /* id of the last event printed */
    uint64_t printed, limit;
    int done;     /* limit reached */
    int received; /* any byte of a 200 reply on this connection */
};

static void sse_field(struct sse *s, const char *line, size_t len)
{
    if (len == 0) { /* end of an event: print it */
        if (s->data.len) {
            fwrite(s->data.body, 1, s->data.len, s->out);
            fputc('\n', s->out);
            fflush(s->out);
            s->printed++;
            if (s->pending_id[0])
                memcpy(s->last_id, s->pending_id, sizeof s->last_id);
            if (s->limit && s->printed >= s->limit)
                s->done = 1;
        }
        s->data.len = 0;
        s->pending_id[0] = '\0';
        return;
    }
    if (line[0] == ':') /* comment: heartbeat */
        return;
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    const char *v = colon ? colon + 1 : line + len;
    size_t vlen = len - (size_t)(v - line);
    if (vlen && *v == ' ') {
        v++;
        vlen--;
    }
    if (name_len == 4 && !strncmp(line, "data", 4)) {
        if (s->data.len)
            body_append(&s->data, "\n", 1);
        body_append(&s->data, v, vlen);
    } else if (name_len == 2 && !strncmp(line, "id", 2)) {
        if (vlen < sizeof s->pending_id) {
            memcpy(s->pending_id, v, vlen);
            s->pending_id[vlen] = '\0';
        }
    }
    /* event: and retry: carry nothing the NDJSON output needs. */
}

static size_t on_sse(char *p, size_t size, size_t n, void *ud)
{
    struct sse *s = ud;
    size_t len = size * n;
    if (!s->status)
        curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->status != 200)
        return body_append(&s->error, p, len) ? 0 : len;
    s->received = 1;
    for (size_t i = 0; i < len; i++) {
        const char *nl = memchr(p + i, '\n', len - i);
        size_t take = nl ? (size_t)(nl - (p + i)) : len - i;
        if (take && body_append(&s->line, p + i, take))
            return 0;
        i += take;
        if (!nl)
            break;
        size_t l = s->line.len;
        if (l && s->line.body[l - 1] == '\r')
            l--;
        sse_field(s, s->line.body ? s->line.body : "", l);
        s->line.len = 0;
        if (s->done)
            return 0; /* stop the transfer: the limit is reached */
    }
    return len;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                       curl_off_t un)
{
    (void)ud, (void)dt, (void)dn, (void)ut, (void)un;
    return follow_stop ? 1 : 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR && !follow_stop)
        ;
}

static int read_follow(const cairn_read_args_t *a, const cairn_client_io_t *io)
{
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    follow_stop = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    struct sse s;
    memset(&s, 0, sizeof s);
    s.out = io->out;
    s.limit = a->limit;
    s.c = client_handle();
    int rc = 1, connected = 0;
    unsigned backoff = 250;
    char errbuf[CURL_ERROR_SIZE];
    if (!s.c) {
        report(io, "read", "cannot start libcurl");
        goto out;
    }
    while (!follow_stop) {
        struct curl_slist *h = base_headers(a->token);
        uint64_t last = 0;
        int resume = s.last_id[0] && parse_u64(s.last_id, &last) == 0;
        char url[URL_MAX];
        if (!h || add_header(&h, "Accept: %s", "text/event-stream") ||
            (resume && add_header(&h, "Last-Event-ID: %s", s.last_id))) {
            curl_slist_free_all(h);
            report(io, "read", "out of memory");
            goto out;
        }
        if (cairn__client_read_url(a, 1, resume ? last + 1 : 0, 0, url,
                                   sizeof url) < 0) {
            curl_slist_free_all(h);
            report(io, "read", "the request URL is too long");
            goto out;
        }
        s.status = 0;
        s.received = 0;
        s.line.len = 0;
        s.data.len = 0;
        s.pending_id[0] = '\0';
        response_reset(&s.error);
        errbuf[0] = '\0';
        curl_easy_reset(s.c);
        curl_easy_setopt(s.c, CURLOPT_URL, url);
        curl_easy_setopt(s.c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(s.c, CURLOPT_WRITEFUNCTION, on_sse);
        curl_easy_setopt(s.c, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(s.c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(s.c, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(s.c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s.c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(s.c, CURLOPT_XFERINFOFUNCTION, on_progress);
        /* The server sends a heartbeat every 15 s: three missed ones mean
         * the connection is dead even if TCP has not noticed. */
        curl_easy_setopt(s.c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(s.c, CURLOPT_LOW_SPEED_TIME, 45L);
        CURLcode cc = curl_easy_perform(s.c);
        curl_slist_free_all(h);
        if (!s.status)
            curl_easy_getinfo(s.c, CURLINFO_RESPONSE_CODE, &s.status);
        if (s.done || follow_stop)
            break;
        if (s.status && s.status != 200) {
            struct response *e = &s.error;
            e->status = s.status;
            check_response(io, "read", url, CURLE_OK, e);
            goto out;
        }
        if (s.received)
            connected = 1;
        if (!connected) {
            /* Never reached the server: a wrong URL, not a dropped link. */
            report(io, "read", "%s: %s", url,
                   errbuf[0] ? errbuf : curl_easy_strerror(cc));
            goto out;
        }
        /* One notice per lost connection, not one per failed retry. */
        if (s.received)
            report(io, "read", "connection lost (%s); resuming after event "
                               "%s",
                   cc == CURLE_OK ? "closed by the server"
                                  : (errbuf[0] ? errbuf
                                               : curl_easy_strerror(cc)),
                   s.last_id[0] ? s.last_id : "(none yet)");
        sleep_ms(backoff);
        backoff = s.received ? 250 : (backoff * 2 > 5000 ? 5000 : backoff * 2);
    }
    rc = 0;
out:
    response_reset(&s.error);
    response_reset(&s.line);
    response_reset(&s.data);
    if (s.c)
        curl_easy_cleanup(s.c);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}

int cairn__client_read(int argc, char **argv, const cairn_client_io_t *io)
{
    cairn_read_args_t a;
    char why[256];
    if (cairn__client_parse_read(argc, argv, &a, why, sizeof why))
        return usage_error(io, "read", why);
    if (a.help) {
        read_help(io->out);
        return 0;
    }
    return a.follow ? read_follow(&a, io) : read_pages(&a, io);
}

/* ---- state --------------------------------------------------------------------------- */

static void state_help(FILE *f)
{
    fprintf(f,
        "usage: cairn state [--url URL] [--token T] STREAM\n"
        "\n"
        "  Prints the state of STREAM as JSON: version, event_count,\n"
        "  first/last seq, breaker, throttled, fsm_state.\n"
        "\n"
        "  --url URL   server (default $CAIRN_URL or %s)\n"
        "  --token T   bearer token (default $CAIRN_TOKEN)\n"
        "\n"
        "  Exit status: 0 success, 1 unknown stream (404), refused or\n"
        "  unreachable, 2 usage error.\n",
        CAIRN_CLIENT_DEFAULT_URL);
}

int cairn__client_state(int argc, char **argv, const cairn_client_io_t *io)
{
    const char *url = getenv("CAIRN_URL"), *token = getenv("CAIRN_TOKEN");
    const char *stream = NULL;
    int help = 0, npos;
    const struct opt opts[] = {
        {"url", &url, NULL},
        {"token", &token, NULL},
        {"help", NULL, &help},
        {NULL, NULL, NULL},
    };
    char why[256];
    if (parse_opts(argc, argv, opts, &stream, 1, &npos, why, sizeof why))
        return usage_error(io, "state", why);
    if (help) {
        state_help(io->out);
        return 0;
    }
    if (!url)
        url = CAIRN_CLIENT_DEFAULT_URL;
    char base[URL_MAX], enc[3 * 255 * 4 + 1], full[URL_MAX];
    if (base_url(url, base, sizeof base))
        return usage_error(io, "state", "--url must start with http:// or "
                                        "https://");
    if (npos != 1 || !*stream)
        return usage_error(io, "state", "give one STREAM");
    if (cairn__client_escape(stream, strlen(stream), enc, sizeof enc) < 0 ||
        snprintf(full, sizeof full, "%s/v1/streams/%s", base, enc) >=
            (int)sizeof full)
        return usage_error(io, "state", "STREAM is too long");

    struct curl_slist *h = base_headers(token);
    CURL *c = client_handle();
    struct response r;
    memset(&r, 0, sizeof r);
    int rc = 1;
    if (!h || !c || add_header(&h, "Accept: %s", "application/json")) {
        report(io, "state", "out of memory");
    } else {
        CURLcode cc = http_request(c, "GET", full, h, NULL, 0, &r);
        rc = check_response(io, "state", full, cc, &r);
        if (rc == 0)
            print_body(io->out, &r);
    }
    response_reset(&r);
    curl_slist_free_all(h);
    if (c)
        curl_easy_cleanup(c);
    return rc;
}

/* ---- entry points ----------------------------------------------------------------------- */

static const cairn_client_io_t *std_io(void)
{
    static cairn_client_io_t io;
    io.in = stdin;
    io.out = stdout;
    io.err = stderr;
    return &io;
}

int cairn_cmd_append(int argc, char **argv)
{
    return cairn__client_append(argc, argv, std_io());
}

int cairn_cmd_read(int argc, char **argv)
{
    return cairn__client_read(argc, argv, std_io());
}

int cairn_cmd_state(int argc, char **argv)
{
    return cairn__client_state(argc, argv, std_io());
}
