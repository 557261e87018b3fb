/*
 * event.c — the event model's validation and the read filter: every
 * invalid field has its own error code (include/cairn/cairn.h).
 */
#include <string.h>

#include "cairn/log.h"
#include "internal/utf8.h"
#include "log/record.h"

int cairn_log_check_stream(const char *stream, size_t len, int allow_reserved)
{
    if (!stream || len == 0)
        return CAIRN_ESTREAM_EMPTY;
    if (len > CAIRN_STREAM_MAX)
        return CAIRN_ESTREAM_TOO_LONG;
    int u = cairn__utf8_check(stream, len, 1);
    if (u == 0)
        return CAIRN_ESTREAM_UTF8;
    if (u < 0)
        return CAIRN_ESTREAM_CONTROL;
    if (stream[0] == '$' && !allow_reserved)
        return CAIRN_ESTREAM_RESERVED;
    return 0;
}

static int check_id(const char *id, size_t len, int too_long, int bad_utf8)
{
    if (len == 0)
        return 0;
    if (len > CAIRN_ID_MAX)
        return too_long;
    if (!id || cairn__utf8_check(id, len, 1) != 1)
        return bad_utf8;
    return 0;
}

int cairn_log_check_event(const cairn_event_in_t *ev, uint32_t max_event_bytes)
{
    if (!ev->type || ev->type_len == 0)
        return CAIRN_ETYPE_EMPTY;
    if (ev->type_len > CAIRN_TYPE_MAX)
        return CAIRN_ETYPE_TOO_LONG;
    int u = cairn__utf8_check(ev->type, ev->type_len, 1);
    if (u == 0)
        return CAIRN_ETYPE_UTF8;
    if (u < 0)
        return CAIRN_ETYPE_CONTROL;
    int rc = check_id(ev->id, ev->id_len, CAIRN_EID_TOO_LONG, CAIRN_EID_UTF8);
    if (rc)
        return rc;
    rc = check_id(ev->correlation_id, ev->correlation_id_len,
                  CAIRN_EMETA_TOO_LONG, CAIRN_EMETA_UTF8);
    if (rc)
        return rc;
    rc = check_id(ev->causation_id, ev->causation_id_len, CAIRN_EMETA_TOO_LONG,
                  CAIRN_EMETA_UTF8);
    if (rc)
        return rc;
    if (ev->payload_len > max_event_bytes)
        return CAIRN_EPAYLOAD_TOO_LARGE;
    if (ev->payload_len && !ev->payload)
        return CAIRN_EPAYLOAD_NULL;
    if (ev->time_ns < 0)
        return CAIRN_ETIME_INVALID;
    return 0;
}

int cairn__batch_check(const char *stream, size_t stream_len,
                       int allow_reserved, const cairn_event_in_t *events,
                       size_t n, const cairn_log_opts_t *o, uint64_t cap,
                       uint64_t *bytes)
{
    int rc = cairn_log_check_stream(stream, stream_len, allow_reserved);
    if (rc)
        return rc;
    if (n == 0 || !events)
        return CAIRN_EBATCH_EMPTY;
    if (n > o->max_batch_events)
        return CAIRN_EBATCH_TOO_LARGE;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        rc = cairn_log_check_event(&events[i], o->max_event_bytes);
        if (rc)
            return rc;
        total += cairn__rec_size(stream_len, &events[i]);
    }
    /* One batch may take at most a quarter of the ring, so a full ring
     * always drains to make room for it. */
    if (total > cap / CAIRN_BATCH_RING_FRACTION)
        return CAIRN_EBATCH_TOO_LARGE;
    *bytes = total;
    return 0;
}

int cairn__filter_match(const cairn_read_filter_t *f, const cairn_event_t *ev)
{
    if (f->stream) {
        if (f->stream_prefix) {
            if (ev->stream_len < f->stream_len ||
                memcmp(ev->stream, f->stream, f->stream_len) != 0)
                return 0;
        } else if (ev->stream_len != f->stream_len ||
                   memcmp(ev->stream, f->stream, f->stream_len) != 0) {
            return 0;
        }
    }
    if (f->time_from_ns && ev->time_ns < f->time_from_ns)
        return 0;
    if (f->time_to_ns && ev->time_ns >= f->time_to_ns)
        return 0;
    if (f->ntypes) {
        for (size_t i = 0; i < f->ntypes; i++)
            if (f->type_lens[i] == ev->type_len &&
                memcmp(f->types[i], ev->type, ev->type_len) == 0)
                return 1;
        return 0;
    }
    return 1;
}
