/*
 * sse.c — GET /v1/subscribe: Server-Sent Events from a bus subscription.
 *
 * Each event goes out as
 *     id: <seq>\nevent: <type>\ndata: <event JSON>\n\n
 * A client that reconnects with Last-Event-ID: N resumes at seq N+1, so
 * no event is lost or repeated across reconnects.  A comment line
 * ": heartbeat" is sent after 15 s without events so proxies and clients
 * see the connection alive.  When retention removed events the
 * subscriber had not read, it is told, never silently:
 *     event: lagged\ndata: {"expected_seq":..,"first_seq":..,"missed":..}
 *
 * The connection runs on its own thread (MHD thread-per-connection), so
 * the content callback blocks in cairn_bus_next for at most a second at
 * a time, which also bounds how long shutdown waits for it.
 */
#include <stdlib.h>
#include <string.h>

#include "cairn/bus.h"
#include "internal/clock.h"
#include "server/http.h"

#define HEARTBEAT_NS (UINT64_C(15) * 1000000000u)
#define WAIT_NS 1000000000

typedef struct sse {
    server_t *s;
    cairn_bus_sub_t *sub;
    sb_t out;    /* formatted, not yet sent */
    size_t sent; /* bytes of out already sent */
    uint64_t last_write_ns;
    int counted; /* included in the sse_clients gauge */
} sse_t;

static void sse_free(void *cls)
{
    sse_t *x = cls;
    cairn_bus_unsubscribe(x->sub);
    if (x->counted)
        cairn_metrics_gauge_add(x->s->sse_clients, -1);
    sb_free(&x->out);
    free(x);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    sse_t *x = cls;
    for (;;) {
        if (x->sent < x->out.len) {
            size_t n = x->out.len - x->sent;
            if (n > max)
                n = max;
            memcpy(buf, x->out.data + x->sent, n);
            x->sent += n;
            if (x->sent == x->out.len)
                x->sent = x->out.len = 0;
            x->last_write_ns = cairn__mono_ns();
            return (ssize_t)n;
        }
        if (atomic_load(&x->s->stopping))
            return MHD_CONTENT_READER_END_OF_STREAM;
        cairn_event_t ev;
        cairn_bus_lag_t lag;
        int rc = cairn_bus_next(x->sub, &ev, WAIT_NS, &lag);
        if (rc == 1) {
            /* Format this event and whatever else is ready now, up to one
             * buffer, so a busy stream costs one write per batch. */
            do {
                sb_printf(&x->out,
                          "id: %llu\nevent: ", (unsigned long long)ev.seq);
                sb_put(&x->out, ev.type, ev.type_len);
                sb_puts(&x->out, "\ndata: ");
                sb_event_json(&x->out, &ev);
                sb_puts(&x->out, "\n\n");
            } while (x->out.len < max && !x->out.oom &&
                     (rc = cairn_bus_next(x->sub, &ev, 0, &lag)) == 1);
            if (rc == CAIRN_ESUBSCRIBER_LAGGED)
                sb_printf(&x->out,
                          "event: lagged\ndata: {\"expected_seq\":%llu,"
                          "\"first_seq\":%llu,\"missed\":%llu}\n\n",
                          (unsigned long long)lag.expected_seq,
                          (unsigned long long)lag.first_seq,
                          (unsigned long long)lag.missed);
        } else if (rc == CAIRN_ESUBSCRIBER_LAGGED) {
            sb_printf(&x->out,
                      "event: lagged\ndata: {\"expected_seq\":%llu,"
                      "\"first_seq\":%llu,\"missed\":%llu}\n\n",
                      (unsigned long long)lag.expected_seq,
                      (unsigned long long)lag.first_seq,
                      (unsigned long long)lag.missed);
        } else if (rc == CAIRN_ETIMEOUT) {
            if (cairn__mono_ns() - x->last_write_ns >= HEARTBEAT_NS)
                sb_puts(&x->out, ": heartbeat\n\n");
        } else {
            return rc == CAIRN_ECLOSED ? MHD_CONTENT_READER_END_OF_STREAM
                                       : MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (x->out.oom)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

enum MHD_Result cairn__api_subscribe(req_t *r)
{
    server_t *s = r->s;
    sse_t *x = calloc(1, sizeof *x);
    if (!x)
        return cairn__error(r, 500, "out_of_memory", "out of memory");
    x->s = s;
    /* The same query as GET /v1/events; a Last-Event-ID header (a
     * reconnecting client) resumes after that seq instead. */
    char why[256] = "";
    qfilter_t q;
    const char *last =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
    uint64_t v = 0;
    if (cairn__query_filter(r, &q, why, sizeof why) < 0 ||
        (last && parse_u64(last, &v) < 0)) {
        cairn__qfilter_free(&q);
        sse_free(x);
        return cairn__error(r, 400, "bad_query", "%s",
                            why[0] ? why : "Last-Event-ID must be a seq");
    }
    cairn_bus_sub_opts_t o = {0};
    o.name = "sse";
    o.from_seq = last ? v + 1 : q.f.from_seq;
    o.from_time_ns = o.from_seq ? 0 : q.f.time_from_ns;
    o.stream = q.f.stream;
    o.stream_len = q.f.stream_len;
    o.stream_prefix = q.f.stream_prefix;
    o.types = q.f.types;
    o.type_lens = q.f.type_lens;
    o.ntypes = q.f.ntypes;
    int rc = cairn_bus_subscribe(s->bus, &o, &x->sub); /* copies o */
    cairn__qfilter_free(&q);
    if (rc < 0) {
        sse_free(x);
        return cairn__error_code(r, rc, 0, NULL);
    }
    if (s->sse_clients) {
        cairn_metrics_gauge_add(s->sse_clients, 1);
        x->counted = 1;
    }
    x->last_write_ns = cairn__mono_ns();
    sb_puts(&x->out, ": cairn event stream\nretry: 1000\n\n");
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 65536, sse_read, x, sse_free);
    if (!resp) {
        sse_free(x);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result ok = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    r->responded = 1;
    return ok;
}
