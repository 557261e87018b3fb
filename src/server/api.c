/*
 * api.c — the route handlers of the HTTP API (the brief's "Stable
 * contracts"): append, reads, stream state, breaker, health, metrics.
 *
 * An append body passes the payload guards twice over: the whole body is
 * decoded (Content-Encoding, or sniffed magic bytes) under the body
 * guard's caps and, for JSON and NDJSON, validated by the iterative
 * depth-limited validator, after which json_events.c reads the events out
 * of it without building a tree; then every event's payload is checked by
 * the event guard (JSON limits, UTF-8, patterns for its type) before
 * anything is appended.  A batch is all or nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cairn/table.h"
#include "internal/clock.h"
#include "internal/guard_state.h"
#include "server/http.h"
#include "server/json_events.h"

#define READ_LIMIT_DEFAULT 1000u
#define READ_LIMIT_CAP 10000u

/*
 * application/vnd.cairn.batch (docs/FORMAT.md "Binary batch"):
 *   "CRNB", u16 version 1, u16 flags 0, u32 count, then per event
 *   u8 type_len, u8 id_len, u8 flags (bit 0 JSON), u8 0, u32 payload_len,
 *   type, id, payload.
 */
static int parse_binary(cairn__jbatch_t *b, const char *p, size_t n, char *why,
                        size_t wl)
{
    if (n < 12 || memcmp(p, "CRNB", 4) != 0) {
        snprintf(why, wl, "not a cairn binary batch (magic)");
        return -1;
    }
    uint16_t ver;
    uint32_t count;
    memcpy(&ver, p + 4, 2);
    memcpy(&count, p + 8, 4);
    if (ver != 1) {
        snprintf(why, wl, "binary batch version %u not supported", ver);
        return -1;
    }
    size_t off = 12;
    for (uint32_t i = 0; i < count; i++) {
        if (n - off < 8) {
            snprintf(why, wl, "binary batch truncated at event %u", i);
            return -1;
        }
        uint8_t tl = (uint8_t)p[off], il = (uint8_t)p[off + 1],
                fl = (uint8_t)p[off + 2];
        uint32_t pl;
        memcpy(&pl, p + off + 4, 4);
        off += 8;
        if ((uint64_t)n - off < (uint64_t)tl + il + pl) {
            snprintf(why, wl, "binary batch truncated at event %u", i);
            return -1;
        }
        cairn__jevent_t *e = cairn__jbatch_slot(b);
        if (!e) {
            snprintf(why, wl, "out of memory");
            return -1;
        }
        memset(e, 0, sizeof *e);
        b->n++;
        e->in.type = p + off;
        e->in.type_len = tl;
        e->in.id = il ? p + off + tl : NULL;
        e->in.id_len = il;
        e->in.payload = p + off + tl + il;
        e->in.payload_len = pl;
        e->in.flags = fl & CAIRN_EVENT_JSON;
        off += (size_t)tl + il + pl;
    }
    if (off != n) {
        snprintf(why, wl, "%zu bytes after the last event", n - off);
        return -1;
    }
    return 0;
}

static const char *header(req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

static int media_is(const char *ct, const char *type)
{
    size_t n = strlen(type);
    return !strncasecmp(ct, type, n) &&
           (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

enum MHD_Result cairn__api_append(req_t *r)
{
    server_t *s = r->s;
    char why[512];
    int rc = cairn_log_check_stream(r->stream, r->stream_len, 0);
    if (rc)
        return cairn__error_code(r, rc, 0, NULL);

    int64_t expected = CAIRN_EXPECT_ANY;
    const char *ev = header(r, "Cairn-Expected-Version");
    if (ev) {
        uint64_t v;
        if (!strcmp(ev, "any"))
            expected = CAIRN_EXPECT_ANY;
        else if (!strcmp(ev, "no-stream"))
            expected = CAIRN_EXPECT_NO_STREAM;
        else if (!strcmp(ev, "exists"))
            expected = CAIRN_EXPECT_EXISTS;
        else if (parse_u64(ev, &v) == 0 && v <= CAIRN_VERSION_MAX)
            expected = (int64_t)v;
        else
            return cairn__error(r, 400, "bad_expected",
                                "Cairn-Expected-Version must be a version, "
                                "any, no-stream or exists");
    }
    cairn_durability_t dur = s->cfg->durability;
    const char *dh = header(r, "Cairn-Durability");
    if (dh) {
        if (!strcmp(dh, "memory"))
            dur = CAIRN_DURABILITY_MEMORY;
        else if (!strcmp(dh, "os"))
            dur = CAIRN_DURABILITY_OS;
        else if (!strcmp(dh, "sync"))
            dur = CAIRN_DURABILITY_SYNC;
        else
            return cairn__error(r, 400, "bad_durability",
                                "Cairn-Durability must be memory, os or sync");
    }
    const char *ct = header(r, "Content-Type");
    enum { CT_JSON, CT_NDJSON, CT_BINARY } kind = CT_JSON;
    if (!ct || media_is(ct, "application/json"))
        kind = CT_JSON;
    else if (media_is(ct, "application/x-ndjson"))
        kind = CT_NDJSON;
    else if (media_is(ct, "application/vnd.cairn.batch"))
        kind = CT_BINARY;
    else
        return cairn__error(r, 415, "unsupported_media_type",
                            "Content-Type %s is not accepted (use "
                            "application/json, application/x-ndjson or "
                            "application/vnd.cairn.batch)",
                            ct);
    int enc = CAIRN_GUARD_ENC_AUTO;
    const char *ce = header(r, "Content-Encoding");
    if (ce && cairn_guard_encoding_parse(ce, strlen(ce), &enc) < 0)
        return cairn__error(r, 415, "unsupported_encoding",
                            "Content-Encoding %s is not supported", ce);

    /* 1. the body: decoded under the body guard's caps */
    cairn_guard_result_t body_res, ev_res;
    cairn_guard_result_init(&body_res);
    cairn_guard_result_init(&ev_res);
    cairn__jbatch_t b = {0};
    enum MHD_Result out;
    rc = cairn_guard_decode(s->body_guard, r->body ? r->body : "", r->len, enc,
                            &body_res);
    if (rc < 0) {
        cairn_guard_result_format(&body_res, why, sizeof why);
        cairn__count_guard(s, rc);
        /* Audited (rate limited, so a flood cannot amplify itself). */
        cairn__audit_guard_rejected(s->log, r->stream, r->stream_len, rc);
        out = cairn__error_code(r, rc, 0, why);
        goto done;
    }
    const char *body = body_res.payload;
    size_t blen = body_res.payload_len;
    if (cairn__jbatch_init(&b, blen) < 0) {
        out = cairn__error(r, 500, "out_of_memory", "out of memory");
        goto done;
    }
    if (kind == CT_BINARY) {
        if (parse_binary(&b, body, blen, why, sizeof why) < 0) {
            out = cairn__error(r, 400, "malformed", "%s", why);
            goto done;
        }
    } else {
        /* Bounded, iterative validation first: the event reader relies on
         * the document being well-formed. */
        const char *p = body, *end = body + blen;
        while (p < end) {
            const char *nl =
                kind == CT_NDJSON ? memchr(p, '\n', (size_t)(end - p)) : NULL;
            const char *stop = nl ? nl : end;
            const char *q = p;
            while (q < stop && (*q == ' ' || *q == '\t' || *q == '\r'))
                q++;
            if (q < stop) {
                rc = cairn_guard_json_validate(&s->cfg->guard, p,
                                               (size_t)(stop - p), &ev_res);
                if (rc < 0) {
                    cairn_guard_result_format(&ev_res, why, sizeof why);
                    cairn__count_guard(s, rc);
                    cairn__audit_guard_rejected(s->log, r->stream,
                                                r->stream_len, rc);
                    out = cairn__error_code(r, rc, 0, why);
                    goto done;
                }
                if (cairn__json_events(p, (size_t)(stop - p), &b, why,
                                       sizeof why) < 0) {
                    out = cairn__error(r, 400, "malformed", "%s", why);
                    goto done;
                }
            }
            p = stop + (nl ? 1 : 0);
        }
    }
    if (b.n == 0) {
        out = cairn__error_code(r, CAIRN_EBATCH_EMPTY, 0, NULL);
        goto done;
    }
    /* 2. every event's payload: guards for its type */
    cairn_event_in_t *ins = malloc(b.n * sizeof *ins);
    if (!ins) {
        out = cairn__error(r, 500, "out_of_memory", "out of memory");
        goto done;
    }
    for (size_t i = 0; i < b.n; i++) {
        cairn_event_in_t *e = &b.ev[i].in;
        rc = cairn_log_check_event(e, s->cfg->log.max_event_bytes);
        if (rc == 0 && e->payload_len)
            rc = cairn_guard_check(s->guard, e->type, e->type_len, e->payload,
                                   e->payload_len, CAIRN_GUARD_ENC_IDENTITY,
                                   (e->flags & CAIRN_EVENT_JSON)
                                       ? CAIRN_GUARD_CONTENT_JSON
                                       : CAIRN_GUARD_CONTENT_BINARY,
                                   &ev_res);
        if (rc < 0) {
            char d[600];
            cairn_guard_result_format(&ev_res, why, sizeof why);
            snprintf(d, sizeof d, "event %zu: %s", i,
                     rc <= -1200 && rc > -1300 ? why : "invalid");
            if (rc <= -1200 && rc > -1300) {
                cairn__count_guard(s, rc);
                cairn__audit_guard_rejected(s->log, r->stream, r->stream_len,
                                            rc);
            }
            free(ins);
            out = cairn__error_code(r, rc, 0, d);
            goto done;
        }
        ins[i] = *e;
    }
    /* 3. the append, all or nothing */
    cairn_append_result_t ar;
    rc = cairn_log_append(s->log, r->stream, r->stream_len, ins, b.n, expected,
                          dur, &ar);
    free(ins);
    if (rc < 0) {
        if (s->appends_failed)
            cairn_metrics_counter_inc(s->appends_failed);
        if (rc == CAIRN_ETHROTTLED && s->throttled)
            cairn_metrics_counter_inc(s->throttled);
        if (rc == CAIRN_EBREAKER_OPEN && s->breaker_rejected)
            cairn_metrics_counter_inc(s->breaker_rejected);
        if (rc == CAIRN_EVERSION_CONFLICT) {
            snprintf(why, sizeof why, "the stream is at version %llu",
                     (unsigned long long)ar.actual_version);
            out = cairn__error_code(r, rc, 0, why);
        } else {
            out = cairn__error_code(r, rc, ar.retry_after_ns, NULL);
        }
        goto done;
    }
    if (s->appends_ok) {
        cairn_metrics_counter_inc(s->appends_ok);
        cairn_metrics_counter_add(s->events_appended, b.n);
        cairn_metrics_counter_add(s->bytes_appended, blen);
    }
    /* 4. outcomes carried by the events move the stream's breaker */
    for (size_t i = 0; i < b.n; i++)
        if (b.ev[i].outcome != CAIRN_OUTCOME_NONE)
            cairn_table_report(s->log, r->stream, r->stream_len,
                               ar.breaker_epoch, b.ev[i].outcome);
    sb_t o = {0};
    sb_puts(&o, "{\"stream\":");
    sb_json_str(&o, r->stream, r->stream_len);
    sb_printf(&o, ",\"first_seq\":%llu,\"last_seq\":%llu,\"version\":%llu",
              (unsigned long long)ar.first_seq, (unsigned long long)ar.last_seq,
              (unsigned long long)ar.version);
    if (ar.duplicate)
        sb_puts(&o, ",\"duplicate\":true");
    sb_puts(&o, "}\n");
    out = cairn__respond_json(r, 201, &o, NULL);
done:
    cairn__jbatch_free(&b);
    cairn_guard_result_free(&body_res);
    cairn_guard_result_free(&ev_res);
    return out;
}

/* ---- reads -----------------------------------------------------------------
 */

static int wants_json_array(req_t *r)
{
    const char *a = header(r, "Accept");
    return a && strstr(a, "application/json") != NULL;
}

/* Stream events matching f into a response (NDJSON or a JSON array). */
static enum MHD_Result stream_out(req_t *r, cairn_read_filter_t *f,
                                  uint64_t limit, uint64_t from_version)
{
    cairn_log_iter_t *it;
    int rc = cairn_log_iter_open(r->s->log, f, &it);
    if (rc == CAIRN_EEXPIRED) {
        char first[32];
        snprintf(first, sizeof first, "%llu",
                 (unsigned long long)cairn_log_first_seq(r->s->log));
        const char *h[] = {"Cairn-First-Seq", first, NULL};
        return cairn__error_h(r, 410, "expired", h,
                              "events before seq %s were removed by "
                              "retention; the first available is %s",
                              first, first);
    }
    if (rc < 0)
        return cairn__error_code(r, rc, 0, NULL);
    const int array = wants_json_array(r);
    sb_t o = {0};
    if (array)
        sb_puts(&o, "[");
    cairn_event_t ev;
    uint64_t n = 0, next_version = from_version;
    while (n < limit && (rc = cairn_log_iter_next(it, &ev)) == 1) {
        if (ev.version < from_version)
            continue;
        if (array && n)
            sb_puts(&o, ",");
        sb_event_json(&o, &ev);
        if (!array)
            sb_puts(&o, "\n");
        next_version = ev.version + 1;
        n++;
    }
    uint64_t next = cairn_log_iter_position(it);
    cairn_log_iter_close(it);
    if (rc < 0) {
        sb_free(&o);
        return cairn__error_code(r, rc, 0, "while reading");
    }
    if (array)
        sb_puts(&o, "]\n");
    char ns[32], nv[32];
    snprintf(ns, sizeof ns, "%llu", (unsigned long long)next);
    snprintf(nv, sizeof nv, "%llu", (unsigned long long)next_version);
    const char *h[] = {"Cairn-Next-Seq", ns, "Cairn-Next-Version", nv, NULL};
    if (!from_version)
        h[2] = NULL;
    if (o.oom) {
        sb_free(&o);
        return cairn__error(r, 500, "out_of_memory", "response too large");
    }
    enum MHD_Result ok = cairn__respond(
        r, 200, array ? "application/json" : "application/x-ndjson",
        o.data ? o.data : "", o.len, h);
    sb_free(&o);
    return ok;
}

static int read_limit(req_t *r, uint64_t *limit)
{
    const char *l = cairn__arg(r, "limit");
    *limit = READ_LIMIT_DEFAULT;
    if (!l)
        return 0;
    if (parse_u64(l, limit) < 0 || *limit == 0)
        return -1;
    if (*limit > READ_LIMIT_CAP)
        *limit = READ_LIMIT_CAP;
    return 0;
}

void cairn__qfilter_free(qfilter_t *q)
{
    free(q->stream);
    free(q->types_buf);
}

int cairn__query_filter(req_t *r, qfilter_t *q, char *why, size_t wl)
{
    memset(q, 0, sizeof *q);
    const char *fs = cairn__arg(r, "from_seq");
    if (fs && parse_u64(fs, &q->f.from_seq) < 0) {
        snprintf(why, wl, "from_seq must be a number");
        return -1;
    }
    size_t n;
    char *ft = cairn__arg_decoded(r, "from_time", &n);
    if (ft) {
        int bad = parse_time(ft, n, &q->f.time_from_ns) < 0;
        free(ft);
        if (bad) {
            snprintf(why, wl, "from_time must be an RFC 3339 time");
            return -1;
        }
    }
    char *st = cairn__arg_decoded(r, "stream", &n);
    char *px = cairn__arg_decoded(r, "prefix", &n);
    if (st && px) {
        free(st);
        free(px);
        snprintf(why, wl, "give stream or prefix, not both");
        return -1;
    }
    q->stream = st ? st : px;
    if (q->stream) {
        q->f.stream = q->stream;
        q->f.stream_len = strlen(q->stream);
        q->f.stream_prefix = px != NULL;
        if (!q->f.stream_len) {
            snprintf(why, wl, "stream or prefix is empty");
            return -1;
        }
    }
    q->types_buf = cairn__arg_decoded(r, "type", &n);
    if (q->types_buf) {
        char *save, *t = strtok_r(q->types_buf, ",", &save);
        for (; t; t = strtok_r(NULL, ",", &save)) {
            if (q->f.ntypes == 64) {
                snprintf(why, wl, "at most 64 types");
                return -1;
            }
            q->types[q->f.ntypes] = t;
            q->type_lens[q->f.ntypes++] = strlen(t);
        }
        q->f.types = q->types;
        q->f.type_lens = q->type_lens;
    }
    return 0;
}

enum MHD_Result cairn__api_events(req_t *r)
{
    char why[256] = "";
    qfilter_t q;
    uint64_t limit;
    if (cairn__query_filter(r, &q, why, sizeof why) < 0 ||
        read_limit(r, &limit) < 0) {
        cairn__qfilter_free(&q);
        return cairn__error(r, 400, "bad_query", "%s",
                            why[0] ? why : "limit must be a positive number");
    }
    enum MHD_Result ok = stream_out(r, &q.f, limit, 0);
    cairn__qfilter_free(&q);
    return ok;
}

enum MHD_Result cairn__api_stream_events(req_t *r)
{
    int rc = cairn_log_check_stream(r->stream, r->stream_len, 1);
    if (rc)
        return cairn__error_code(r, rc, 0, NULL);
    cairn_stream_info_t si;
    rc = cairn_log_stream_info(r->s->log, r->stream, r->stream_len, &si);
    if (rc)
        return cairn__error_code(r, rc, 0, r->stream);
    uint64_t from_version = 1, limit;
    const char *fv = cairn__arg(r, "from_version");
    if ((fv && (parse_u64(fv, &from_version) < 0 || from_version == 0)) ||
        read_limit(r, &limit) < 0)
        return cairn__error(r, 400, "bad_query",
                            "from_version and limit must be positive numbers");
    cairn_read_filter_t f = {0};
    f.stream = r->stream;
    f.stream_len = r->stream_len;
    /* Start at the stream's first event; with retention that may be gone,
     * then the oldest retained. */
    f.from_seq = si.first_seq;
    if (f.from_seq < cairn_log_first_seq(r->s->log))
        f.from_seq = cairn_log_first_seq(r->s->log);
    return stream_out(r, &f, limit, from_version);
}

static const char *breaker_name(cairn_breaker_state_t b)
{
    return b == CAIRN_BREAKER_OPEN        ? "open"
           : b == CAIRN_BREAKER_HALF_OPEN ? "half_open"
                                          : "closed";
}

enum MHD_Result cairn__api_stream(req_t *r)
{
    int rc = cairn_log_check_stream(r->stream, r->stream_len, 1);
    if (rc)
        return cairn__error_code(r, rc, 0, NULL);
    cairn_stream_state_t st;
    rc = cairn_table_get_state(r->s->log, r->stream, r->stream_len, &st);
    if (rc == 0 && st.version == 0)
        rc = CAIRN_ENOT_FOUND;
    if (rc)
        return cairn__error_code(r, rc, 0, r->stream);
    sb_t o = {0};
    sb_puts(&o, "{\"stream\":");
    sb_json_str(&o, r->stream, r->stream_len);
    sb_printf(
        &o,
        ",\"version\":%llu,\"event_count\":%llu,\"first_seq\":%llu,"
        "\"last_seq\":%llu,\"breaker\":\"%s\",\"breaker_epoch\":%u,"
        "\"throttled\":%s,\"retry_after_ns\":%llu,\"successes\":%llu,"
        "\"failures\":%llu,\"fsm_state\":",
        (unsigned long long)st.version, (unsigned long long)st.event_count,
        (unsigned long long)st.first_seq, (unsigned long long)st.last_seq,
        breaker_name(st.breaker), st.breaker_epoch,
        st.throttled_now ? "true" : "false",
        (unsigned long long)st.retry_after_ns, (unsigned long long)st.successes,
        (unsigned long long)st.failures);
    const char *fsm = cairn_log_fsm_state_name(r->s->log, r->stream,
                                               r->stream_len, st.fsm_state);
    if (fsm)
        sb_json_str(&o, fsm, strlen(fsm));
    else
        sb_puts(&o, "null");
    sb_puts(&o, "}\n");
    return cairn__respond_json(r, 200, &o, NULL);
}

enum MHD_Result cairn__api_breaker(req_t *r)
{
    int rc = cairn_log_check_stream(r->stream, r->stream_len, 0);
    if (rc)
        return cairn__error_code(r, rc, 0, NULL);
    json_error_t je;
    json_t *root = json_loadb(r->body ? r->body : "", r->len, 0, &je);
    const char *st =
        root ? json_string_value(json_object_get(root, "state")) : NULL;
    cairn_breaker_state_t b;
    if (st && !strcmp(st, "open"))
        b = CAIRN_BREAKER_OPEN;
    else if (st && !strcmp(st, "closed"))
        b = CAIRN_BREAKER_CLOSED;
    else if (st && !strcmp(st, "half_open"))
        b = CAIRN_BREAKER_HALF_OPEN;
    else {
        json_decref(root);
        return cairn__error(r, 400, "bad_breaker_state",
                            "body must be {\"state\":\"open|closed|"
                            "half_open\"}");
    }
    json_decref(root);
    rc = cairn_table_set_breaker(r->s->log, r->stream, r->stream_len, b);
    if (rc)
        return cairn__error_code(r, rc, 0, NULL);
    sb_t o = {0};
    sb_puts(&o, "{\"stream\":");
    sb_json_str(&o, r->stream, r->stream_len);
    sb_printf(&o, ",\"breaker\":\"%s\"}\n", breaker_name(b));
    return cairn__respond_json(r, 200, &o, NULL);
}

enum MHD_Result cairn__api_readyz(req_t *r)
{
    server_t *s = r->s;
    if (!atomic_load(&s->ready))
        return cairn__respond_lit(r, 503,
                                  "{\"ready\":false,\"reason\":"
                                  "\"recovering\"}\n");
    cairn_log_health_t h;
    cairn_log_health(s->log, &h);
    if (h.read_only) {
        sb_t o = {0};
        sb_printf(&o, "{\"ready\":false,\"reason\":\"read-only: %s\"}\n",
                  cairn_strerror(h.error));
        enum MHD_Result ok =
            cairn__respond(r, 503, "application/json", o.data, o.len, NULL);
        sb_free(&o);
        return ok;
    }
    return cairn__respond_lit(r, 200, "{\"ready\":true}\n");
}

enum MHD_Result cairn__api_metrics(req_t *r)
{
    server_t *s = r->s;
    const char *ctype = "application/json";
    cairn_metrics_format_t f = CAIRN_METRICS_JSON;
    if (r->route == ROUTE_METRICS)
        f = cairn_metrics_format_from_accept(header(r, "Accept"), &ctype);
    cairn__server_collect(s);
    cairn_metrics_buf_t buf = {0};
    int rc = cairn_metrics_export(s->metrics, f, &buf);
    if (rc < 0) {
        cairn_metrics_buf_free(&buf);
        return cairn__error_code(r, rc, 0, NULL);
    }
    enum MHD_Result ok = cairn__respond(r, 200, ctype, buf.data, buf.len, NULL);
    cairn_metrics_buf_free(&buf);
    return ok;
}
