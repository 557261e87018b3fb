/*
 * builtin.c — the projections the server offers by name: counts, last,
 * merge (RFC 7396 over jansson) and fsm (include/cairn/projection.h).
 *
 * Every state is a serialized byte string of at most state_max bytes
 * (docs/PROJECTION.md, "Built-ins", gives the layouts).  The folds are
 * pure functions of (state, event, definition), as the cache requires.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "cairn/table.h"
#include "projection/projection_internal.h"

/* ---- helpers -------------------------------------------------------------- */

static int dump(json_t *root, char **json, size_t *json_len)
{
    if (!root)
        return -ENOMEM;
    char *s = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(root);
    if (!s)
        return -ENOMEM;
    *json = s;
    *json_len = strlen(s);
    return 0;
}

/* The payload as a JSON value when it is JSON, else base64 in a string
 * member "data_base64" (added to obj). */
static void put_data(json_t *obj, const void *payload, size_t len, uint32_t flags)
{
    if (flags & CAIRN_EVENT_JSON) {
        json_t *v = json_loadb(payload, len, JSON_DECODE_ANY, NULL);
        if (v) {
            json_object_set_new(obj, "data", v);
            return;
        }
    }
    size_t b = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(b);
    if (!s)
        return;
    sodium_bin2base64(s, b, payload, len, sodium_base64_VARIANT_ORIGINAL);
    json_object_set_new(obj, "data_base64", json_string(s));
    free(s);
}

/* ---- counts ---------------------------------------------------------------
 * header: u64 total, u64 other, u32 ntypes, u32 pad
 * entry:  u64 count, u32 type_len, type bytes, zeroes to a multiple of 8 */

#define COUNTS_HDR 24u

static size_t counts_entry_size(size_t type_len)
{
    return (12 + type_len + 7) & ~(size_t)7;
}

static int counts_init(void *ctx, void *state, size_t *len, size_t cap)
{
    (void)ctx;
    if (cap < COUNTS_HDR)
        return CAIRN_EPROJECTION_STATE_TOO_LARGE;
    memset(state, 0, COUNTS_HDR);
    *len = COUNTS_HDR;
    return 0;
}

static int counts_fold(void *ctx, void *state, size_t *len, size_t cap,
                       const cairn_event_t *ev)
{
    (void)ctx;
    uint8_t *s = state;
    uint64_t total, other, count;
    uint32_t n, tl;
    if (*len < COUNTS_HDR && counts_init(ctx, state, len, cap) != 0)
        return CAIRN_EPROJECTION_STATE_TOO_LARGE;
    memcpy(&total, s, 8);
    total++;
    memcpy(s, &total, 8);
    memcpy(&n, s + 16, 4);
    size_t off = COUNTS_HDR;
    for (uint32_t i = 0; i < n; i++) {
        memcpy(&tl, s + off + 8, 4);
        if (tl == ev->type_len && memcmp(s + off + 12, ev->type, tl) == 0) {
            memcpy(&count, s + off, 8);
            count++;
            memcpy(s + off, &count, 8);
            return 0;
        }
        off += counts_entry_size(tl);
    }
    size_t es = counts_entry_size(ev->type_len);
    if (off + es > cap) {
        memcpy(&other, s + 8, 8);
        other++;
        memcpy(s + 8, &other, 8);
        return 0;
    }
    memset(s + off, 0, es);
    count = 1;
    tl = ev->type_len;
    memcpy(s + off, &count, 8);
    memcpy(s + off + 8, &tl, 4);
    memcpy(s + off + 12, ev->type, tl);
    n++;
    memcpy(s + 16, &n, 4);
    *len = off + es;
    return 0;
}

static int counts_json(void *ctx, const void *state, size_t len, char **json,
                       size_t *json_len)
{
    (void)ctx;
    const uint8_t *s = state;
    uint64_t total = 0, other = 0, count;
    uint32_t n = 0, tl;
    if (len >= COUNTS_HDR) {
        memcpy(&total, s, 8);
        memcpy(&other, s + 8, 8);
        memcpy(&n, s + 16, 4);
    }
    json_t *by = json_object();
    size_t off = COUNTS_HDR;
    for (uint32_t i = 0; i < n && off + 12 <= len; i++) {
        memcpy(&count, s + off, 8);
        memcpy(&tl, s + off + 8, 4);
        json_object_setn_new(by, (const char *)s + off + 12, tl,
                             json_integer((json_int_t)count));
        off += counts_entry_size(tl);
    }
    return dump(json_pack("{s:I,s:o,s:I}", "total", (json_int_t)total,
                          "by_type", by, "other", (json_int_t)other),
                json, json_len);
}

/* ---- last ------------------------------------------------------------------
 * header: u64 seq, u64 version, i64 time_ns, u32 flags, u32 type_len,
 *         u32 payload_len, u32 omitted (1: payload did not fit)
 * then type bytes, then the payload when not omitted */

#define LAST_HDR 40u

static int last_fold(void *ctx, void *state, size_t *len, size_t cap,
                     const cairn_event_t *ev)
{
    (void)ctx;
    uint8_t *s = state;
    if (LAST_HDR + ev->type_len > cap)
        return CAIRN_EPROJECTION_STATE_TOO_LARGE;
    uint32_t omitted = LAST_HDR + ev->type_len + ev->payload_len > cap;
    uint32_t tl = ev->type_len, pl = ev->payload_len;
    memcpy(s, &ev->seq, 8);
    memcpy(s + 8, &ev->version, 8);
    memcpy(s + 16, &ev->time_ns, 8);
    memcpy(s + 24, &ev->flags, 4);
    memcpy(s + 28, &tl, 4);
    memcpy(s + 32, &pl, 4);
    memcpy(s + 36, &omitted, 4);
    memcpy(s + LAST_HDR, ev->type, tl);
    *len = LAST_HDR + tl;
    if (!omitted && pl) {
        memcpy(s + *len, ev->payload, pl);
        *len += pl;
    }
    return 0;
}

static int last_json(void *ctx, const void *state, size_t len, char **json,
                     size_t *json_len)
{
    (void)ctx;
    const uint8_t *s = state;
    if (len < LAST_HDR)
        return dump(json_null(), json, json_len);
    uint64_t seq, version;
    int64_t t;
    uint32_t flags, tl, pl, omitted;
    memcpy(&seq, s, 8);
    memcpy(&version, s + 8, 8);
    memcpy(&t, s + 16, 8);
    memcpy(&flags, s + 24, 4);
    memcpy(&tl, s + 28, 4);
    memcpy(&pl, s + 32, 4);
    memcpy(&omitted, s + 36, 4);
    json_t *o = json_pack("{s:I,s:I,s:s%,s:I}", "seq", (json_int_t)seq,
                          "version", (json_int_t)version, "type",
                          (const char *)s + LAST_HDR, (size_t)tl, "time_ns",
                          (json_int_t)t);
    if (!o)
        return -ENOMEM;
    if (omitted) {
        json_object_set_new(o, "data_omitted", json_true());
        json_object_set_new(o, "data_len", json_integer(pl));
    } else {
        put_data(o, s + LAST_HDR + tl, pl, flags);
    }
    return dump(o, json, json_len);
}

/* ---- merge -----------------------------------------------------------------
 * header: u64 skipped, u32 doc_len (0: no document yet), u32 pad
 * then the document as compact JSON text */

#define MERGE_HDR 16u

/* RFC 7396 section 2: MergePatch(Target, Patch).  Takes target's
 * reference, borrows patch, returns a new reference (NULL on ENOMEM). */
static json_t *merge_patch(json_t *target, json_t *patch)
{
    if (!json_is_object(patch)) {
        json_decref(target);
        return json_incref(patch);
    }
    if (!json_is_object(target)) {
        json_decref(target);
        if (!(target = json_object()))
            return NULL;
    }
    const char *key;
    size_t key_len;
    json_t *value;
    json_object_keylen_foreach(patch, key, key_len, value)
    {
        if (json_is_null(value)) {
            json_object_deln(target, key, key_len);
            continue;
        }
        json_t *cur = json_object_getn(target, key, key_len);
        json_t *m = merge_patch(cur ? json_incref(cur) : json_null(), value);
        if (!m || json_object_setn_new(target, key, key_len, m) != 0) {
            json_decref(target);
            return NULL;
        }
    }
    return target;
}

static int merge_fold(void *ctx, void *state, size_t *len, size_t cap,
                      const cairn_event_t *ev)
{
    (void)ctx;
    uint8_t *s = state;
    uint64_t skipped = 0;
    uint32_t doc_len = 0;
    if (cap < MERGE_HDR)
        return CAIRN_EPROJECTION_STATE_TOO_LARGE;
    if (*len >= MERGE_HDR) {
        memcpy(&skipped, s, 8);
        memcpy(&doc_len, s + 8, 4);
    } else {
        memset(s, 0, MERGE_HDR);
    }
    json_t *patch = (ev->flags & CAIRN_EVENT_JSON)
                        ? json_loadb(ev->payload, ev->payload_len,
                                     JSON_DECODE_ANY, NULL)
                        : NULL;
    if (!patch) {
        skipped++;
        memcpy(s, &skipped, 8);
        *len = MERGE_HDR + doc_len;
        return 0;
    }
    json_t *doc = doc_len ? json_loadb((const char *)s + MERGE_HDR, doc_len,
                                       JSON_DECODE_ANY, NULL)
                          : json_null();
    json_t *m = doc ? merge_patch(doc, patch) : NULL;
    json_decref(patch);
    if (!m)
        return -ENOMEM;
    size_t need = json_dumpb(m, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    if (need == 0 || MERGE_HDR + need > cap) {
        json_decref(m);
        return need ? CAIRN_EPROJECTION_STATE_TOO_LARGE : -ENOMEM;
    }
    json_dumpb(m, (char *)s + MERGE_HDR, need, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(m);
    doc_len = (uint32_t)need;
    memcpy(s + 8, &doc_len, 4);
    *len = MERGE_HDR + need;
    return 0;
}

static int merge_json(void *ctx, const void *state, size_t len, char **json,
                      size_t *json_len)
{
    (void)ctx;
    const uint8_t *s = state;
    uint64_t skipped = 0;
    uint32_t doc_len = 0;
    if (len >= MERGE_HDR) {
        memcpy(&skipped, s, 8);
        memcpy(&doc_len, s + 8, 4);
    }
    json_t *doc = doc_len ? json_loadb((const char *)s + MERGE_HDR, doc_len,
                                       JSON_DECODE_ANY, NULL)
                          : json_null();
    if (!doc)
        return -ENOMEM;
    return dump(json_pack("{s:o,s:I}", "doc", doc, "skipped",
                          (json_int_t)skipped),
                json, json_len);
}

/* ---- fsm --------------------------------------------------------------------
 * state: u32 fsm_state, u32 invalid (trigger events that were not valid
 * from the state they met, e.g. appended before the stream was bound) */

static int fsm_init(void *ctx, void *state, size_t *len, size_t cap)
{
    (void)ctx;
    if (cap < 8)
        return CAIRN_EPROJECTION_STATE_TOO_LARGE;
    memset(state, 0, 8); /* the initial state is always number 0 */
    *len = 8;
    return 0;
}

static int fsm_fold(void *ctx, void *state, size_t *len, size_t cap,
                    const cairn_event_t *ev)
{
    const cairn_fsm_def_t *def = ctx;
    uint32_t st[2];
    if (*len < 8 && fsm_init(ctx, state, len, cap) != 0)
        return CAIRN_EPROJECTION_STATE_TOO_LARGE;
    memcpy(st, state, 8);
    if (def) {
        uint32_t next;
        int rc = cairn_fsm_def_next(def, st[0], ev->type, ev->type_len, &next);
        if (rc == 0)
            st[0] = next;
        else if (rc == CAIRN_EFSM_INVALID_TRANSITION)
            st[1]++;
    }
    memcpy(state, st, 8);
    return 0;
}

static int fsm_json(void *ctx, const void *state, size_t len, char **json,
                    size_t *json_len)
{
    const cairn_fsm_def_t *def = ctx;
    uint32_t st[2] = {0, 0};
    if (len >= 8)
        memcpy(st, state, 8);
    json_t *o = json_pack("{s:I}", "fsm_state_id", (json_int_t)st[0]);
    if (!o)
        return -ENOMEM;
    if (def) {
        const char *name = cairn_fsm_def_state_name(def, st[0]);
        json_object_set_new(o, "fsm_state", name ? json_string(name) : json_null());
        json_object_set_new(o, "invalid_triggers", json_integer(st[1]));
    }
    return dump(o, json, json_len);
}

/* Without a definition: the stream table's fsm_state, read live. */
static int fsm_live(void *ctx, cairn_log_t *log, const char *stream, size_t len,
                    void *state, size_t cap, cairn_projection_info_t *info)
{
    (void)ctx;
    cairn_stream_state_t st;
    int rc = cairn_table_get_state(log, stream, len, &st);
    if (rc)
        return rc;
    if (st.version == 0)
        return CAIRN_ENOT_FOUND;
    if (cap < 8)
        return -ENOBUFS;
    uint32_t v[2] = {st.fsm_state, 0};
    memcpy(state, v, 8);
    memset(info, 0, sizeof *info);
    info->state_len = 8;
    info->seq = st.last_seq;
    info->version = st.version;
    return 0;
}

/* ---- registry --------------------------------------------------------------- */

int cairn_projection_create_builtin(cairn_bus_t *bus, const char *kind,
                                    const char *name, const cairn_fsm_def_t *fsm,
                                    const cairn_projection_opts_t *opts,
                                    cairn_projection_t **out)
{
    if (!kind)
        return CAIRN_EPROJECTION_UNKNOWN;
    cairn_projection_def_t d = {.name = name ? name : kind};
    cairn__live_fn live = NULL;
    if (strcmp(kind, "counts") == 0) {
        d.init = counts_init;
        d.fold = counts_fold;
        d.to_json = counts_json;
    } else if (strcmp(kind, "last") == 0) {
        d.fold = last_fold;
        d.to_json = last_json;
    } else if (strcmp(kind, "merge") == 0) {
        d.fold = merge_fold;
        d.to_json = merge_json;
    } else if (strcmp(kind, "fsm") == 0) {
        d.state_max = 8;
        d.init = fsm_init;
        d.fold = fsm_fold;
        d.to_json = fsm_json;
        d.ctx = (void *)fsm;
        if (!fsm)
            live = fsm_live;
    } else {
        return CAIRN_EPROJECTION_UNKNOWN;
    }
    return cairn__projection_create_ex(bus, &d, opts, live, out);
}
