/*
 * json_events.c — events out of a JSON request body, without building a
 * tree.
 *
 * The body has already passed the guards' validator (syntax, UTF-8,
 * depth, string and member limits, no duplicate keys), so this reader
 * only has to find spans: each event object's members, its string fields
 * decoded (escapes, surrogate pairs) into an arena, and its "data" value
 * copied with the insignificant whitespace removed (so a payload never
 * carries a raw newline into NDJSON or SSE output).  It still checks every
 * byte it relies on and fails cleanly on anything unexpected.  Measured
 * against jansson's tree (json_loadb, then json_dumps of each "data") on
 * batches of 100 events: see BENCHMARKS.md, HTTP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/json_events.h"
#include "server/util.h"

typedef struct cur {
    const char *p, *end;
    char *arena; /* decoded strings and compacted data land here */
    size_t used, cap;
    char *why;
    size_t wl;
} cur_t;

static int fail(cur_t *c, const char *msg)
{
    snprintf(c->why, c->wl, "%s", msg);
    return -1;
}

static void ws(cur_t *c)
{
    while (c->p < c->end &&
           (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                     : ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10)
                                              : 16u;
        if (d > 15)
            return -1;
        *v = *v * 16 + d;
    }
    return 0;
}

static void put_utf8(cur_t *c, unsigned cp)
{
    char *o = c->arena + c->used;
    if (cp < 0x80) {
        o[0] = (char)cp;
        c->used += 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        c->used += 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        c->used += 3;
    } else {
        o[0] = (char)(0xf0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[3] = (char)(0x80 | (cp & 0x3f));
        c->used += 4;
    }
}

/* A string at c->p, decoded into the arena: *s, *n.  An escape is never
 * shorter than what it decodes to, so the arena (as large as the body)
 * always has room. */
static int string(cur_t *c, const char **s, size_t *n)
{
    if (c->p >= c->end || *c->p != '"')
        return fail(c, "expected a string");
    c->p++;
    *s = c->arena + c->used;
    const size_t start = c->used;
    while (c->p < c->end && *c->p != '"') {
        if (*c->p != '\\') {
            const char *q = c->p;
            while (q < c->end && *q != '"' && *q != '\\')
                q++;
            memcpy(c->arena + c->used, c->p, (size_t)(q - c->p));
            c->used += (size_t)(q - c->p);
            c->p = q;
            continue;
        }
        if (c->end - c->p < 2)
            return fail(c, "truncated escape");
        char e = c->p[1];
        c->p += 2;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char out[] = "\"\\/\b\f\n\r\t";
            c->arena[c->used++] = out[simple - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u' || c->end - c->p < 4)
            return fail(c, "bad escape");
        unsigned cp;
        if (hex4(c->p, &cp) < 0)
            return fail(c, "bad \\u escape");
        c->p += 4;
        if (cp >= 0xd800 && cp < 0xdc00) {
            unsigned lo;
            if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' ||
                hex4(c->p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                return fail(c, "unpaired surrogate");
            c->p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if (cp >= 0xdc00 && cp < 0xe000) {
            return fail(c, "unpaired surrogate");
        }
        put_utf8(c, cp);
    }
    if (c->p >= c->end)
        return fail(c, "unterminated string");
    c->p++;
    *n = c->used - start;
    return 0;
}

/* Copy the value at c->p into the arena without insignificant
 * whitespace; iterative (the validator bounded the depth already). */
static int value_compact(cur_t *c, const char **s, size_t *n)
{
    *s = c->arena + c->used;
    const size_t start = c->used;
    int depth = 0;
    do {
        ws(c);
        if (c->p >= c->end)
            return fail(c, "truncated value");
        char ch = *c->p;
        if (ch == '"') {
            const char *q = c->p + 1;
            while (q < c->end && *q != '"')
                q += *q == '\\' ? 2 : 1;
            if (q >= c->end)
                return fail(c, "unterminated string");
            q++;
            memcpy(c->arena + c->used, c->p, (size_t)(q - c->p));
            c->used += (size_t)(q - c->p);
            c->p = q;
        } else if (ch == '{' || ch == '[') {
            depth++;
            c->arena[c->used++] = ch;
            c->p++;
            continue; /* the first element may follow, or the close */
        } else if (ch == '}' || ch == ']') {
            if (depth == 0)
                return fail(c, "unbalanced value");
            depth--;
            c->arena[c->used++] = ch;
            c->p++;
        } else if (ch == ',' || ch == ':') {
            if (depth == 0)
                return fail(c, "unexpected separator");
            c->arena[c->used++] = ch;
            c->p++;
            continue;
        } else {
            const char *q = c->p;
            while (q < c->end &&
                   (strchr("+-.eE", *q) || (*q >= '0' && *q <= '9') ||
                    (*q >= 'a' && *q <= 'z')))
                q++;
            if (q == c->p)
                return fail(c, "unexpected character");
            memcpy(c->arena + c->used, c->p, (size_t)(q - c->p));
            c->used += (size_t)(q - c->p);
            c->p = q;
        }
        /* after a complete scalar or a close: a separator or a close, or
         * the end of the value */
    } while (depth > 0);
    *n = c->used - start;
    return 0;
}

static int member_string(cur_t *c, const char *key, const char **s, size_t *n)
{
    if (c->p >= c->end || *c->p != '"') {
        snprintf(c->why, c->wl, "\"%s\" must be a string", key);
        return -1;
    }
    return string(c, s, n);
}

static int event(cur_t *c, cairn__jevent_t *e)
{
    memset(e, 0, sizeof *e);
    e->in.flags = CAIRN_EVENT_JSON;
    ws(c);
    if (c->p >= c->end || *c->p != '{')
        return fail(c, "an event must be a JSON object");
    c->p++;
    ws(c);
    int first = 1, have_data = 0, have_b64 = 0;
    const char *b64 = NULL;
    size_t b64n = 0;
    while (c->p < c->end && *c->p != '}') {
        if (!first) {
            if (*c->p != ',')
                return fail(c, "expected ',' between members");
            c->p++;
            ws(c);
        }
        first = 0;
        const char *k;
        size_t kn;
        if (string(c, &k, &kn) < 0)
            return -1;
        ws(c);
        if (c->p >= c->end || *c->p != ':')
            return fail(c, "expected ':'");
        c->p++;
        ws(c);
#define KEY(lit) (kn == sizeof(lit) - 1 && memcmp(k, lit, kn) == 0)
        const char *v = NULL;
        size_t vn = 0;
        int rc;
        if (KEY("type")) {
            rc = member_string(c, "type", &e->in.type, &e->in.type_len);
        } else if (KEY("id")) {
            rc = member_string(c, "id", &e->in.id, &e->in.id_len);
        } else if (KEY("correlation_id")) {
            rc = member_string(c, "correlation_id", &e->in.correlation_id,
                               &e->in.correlation_id_len);
        } else if (KEY("causation_id")) {
            rc = member_string(c, "causation_id", &e->in.causation_id,
                               &e->in.causation_id_len);
        } else if (KEY("time")) {
            rc = member_string(c, "time", &v, &vn);
            if (rc == 0 && parse_time(v, vn, &e->in.time_ns) < 0)
                return fail(c, "\"time\" is not an RFC 3339 time");
        } else if (KEY("outcome")) {
            rc = member_string(c, "outcome", &v, &vn);
            if (rc == 0) {
                if (vn == 7 && !memcmp(v, "success", 7))
                    e->outcome = CAIRN_OUTCOME_SUCCESS;
                else if (vn == 7 && !memcmp(v, "failure", 7))
                    e->outcome = CAIRN_OUTCOME_FAILURE;
                else
                    return fail(c, "\"outcome\" must be \"success\" or "
                                   "\"failure\"");
            }
        } else if (KEY("data")) {
            rc = value_compact(c, &v, &vn);
            e->in.payload = v;
            e->in.payload_len = vn;
            have_data = 1;
        } else if (KEY("data_base64")) {
            rc = member_string(c, "data_base64", &b64, &b64n);
            have_b64 = 1;
        } else {
            snprintf(c->why, c->wl, "unknown field \"%.*s\"", (int)kn, k);
            return -1;
        }
#undef KEY
        if (rc < 0)
            return -1;
        ws(c);
    }
    if (c->p >= c->end)
        return fail(c, "unterminated object");
    c->p++;
    if (!e->in.type)
        return fail(c, "\"type\" is required");
    if (have_data && have_b64)
        return fail(c, "give \"data\" or \"data_base64\", not both");
    if (have_b64) {
        size_t n;
        e->owned = b64_decode(b64, b64n, &n);
        if (!e->owned)
            return fail(c, "\"data_base64\" is not valid base64");
        e->in.payload = e->owned;
        e->in.payload_len = n;
        e->in.flags = 0;
    }
    return 0;
}

int cairn__jbatch_init(cairn__jbatch_t *b, size_t body_len)
{
    memset(b, 0, sizeof *b);
    /* Decoded strings and compacted values are never longer than the
     * text they come from, so one arena the size of the body holds what
     * every document of the body needs. */
    b->arena = malloc(body_len + 1);
    b->cap = body_len + 1;
    return b->arena ? 0 : -1;
}

cairn__jevent_t *cairn__jbatch_slot(cairn__jbatch_t *b)
{
    if (b->n == b->ncap) {
        size_t cap = b->ncap ? 2 * b->ncap : 16;
        cairn__jevent_t *n = realloc(b->ev, cap * sizeof *n);
        if (!n)
            return NULL;
        b->ev = n;
        b->ncap = cap;
    }
    return &b->ev[b->n];
}

static int parse_doc(cur_t *c, cairn__jbatch_t *b)
{
    ws(c);
    const int array = c->p < c->end && *c->p == '[';
    if (array) {
        c->p++;
        ws(c);
    }
    for (int first = 1; c->p < c->end && !(array && *c->p == ']'); first = 0) {
        if (!first) {
            if (!array)
                break;
            if (*c->p != ',')
                return fail(c, "expected ',' between events");
            c->p++;
        }
        cairn__jevent_t *e = cairn__jbatch_slot(b);
        if (!e)
            return fail(c, "out of memory");
        int rc = event(c, e);
        b->n++; /* kept even on failure, so its owned payload is freed */
        if (rc < 0)
            return -1;
        ws(c);
    }
    if (array) {
        if (c->p >= c->end)
            return fail(c, "unterminated array");
        c->p++;
    }
    ws(c);
    if (c->p != c->end)
        return fail(c, "data after the JSON document");
    return 0;
}

int cairn__json_events(const char *body, size_t len, cairn__jbatch_t *b,
                       char *why, size_t wl)
{
    if (len > b->cap - b->used) {
        snprintf(why, wl, "out of memory");
        return -1;
    }
    cur_t c = {body, body + len, b->arena, b->used, b->cap, why, wl};
    int rc = parse_doc(&c, b);
    b->used = c.used;
    return rc;
}

void cairn__jbatch_free(cairn__jbatch_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->ev[i].owned);
    free(b->ev);
    free(b->arena);
    memset(b, 0, sizeof *b);
}
