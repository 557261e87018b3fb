/*
 * api_state.c — GET /v1/streams/{stream}/state?projection=NAME
 * [&at_seq=N | &at_time=RFC3339]: derived state from the built-in
 * projections (counts, last, merge, fsm), current or as of a seq or time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/projection.h"
#include "server/http.h"

typedef struct cairn_projections {
    cairn_projection_t *p[4];
} cairn_projections_t;

int cairn__projections_open(server_t *s)
{
    static const char *const kinds[] = {"counts", "last", "merge", "fsm"};
    cairn_projections_t *ps = calloc(1, sizeof *ps);
    if (!ps)
        return -ENOMEM;
    cairn_projection_opts_t o;
    cairn_projection_opts_init(&o);
    o.cache_capacity = s->cfg->projection_cache;
    o.snapshot_every = s->cfg->snapshot_every;
    o.metrics = s->metrics;
    for (int i = 0; i < 4; i++) {
        int rc = cairn_projection_create_builtin(s->bus, kinds[i], NULL, NULL,
                                                 &o, &ps->p[i]);
        if (rc < 0) {
            s->projections = ps;
            cairn__projections_close(s);
            return rc;
        }
    }
    s->projections = ps;
    return 0;
}

void cairn__projections_close(server_t *s)
{
    cairn_projections_t *ps = s->projections;
    if (!ps)
        return;
    for (int i = 0; i < 4; i++)
        cairn_projection_destroy(ps->p[i]);
    free(ps);
    s->projections = NULL;
}

enum MHD_Result cairn__api_stream_state(req_t *r)
{
    server_t *s = r->s;
    int rc = cairn_log_check_stream(r->stream, r->stream_len, 1);
    if (rc)
        return cairn__error_code(r, rc, 0, NULL);
    const char *name = cairn__arg(r, "projection");
    if (!name)
        return cairn__error(r, 400, "bad_query",
                            "projection=NAME is required (counts, last, "
                            "merge, fsm)");
    cairn_projection_t *p;
    if (cairn_projection_find(s->bus, name, &p) < 0)
        return cairn__error(r, 404, "projection_unknown",
                            "no projection named %s", name);
    uint64_t at_seq = 0;
    int64_t at_time = 0;
    const char *as = cairn__arg(r, "at_seq");
    size_t n;
    char *at = cairn__arg_decoded(r, "at_time", &n);
    int bad = (as && (parse_u64(as, &at_seq) < 0 || at_seq == 0)) ||
              (at && parse_time(at, n, &at_time) < 0) || (as && at);
    free(at);
    if (bad)
        return cairn__error(r, 400, "bad_query",
                            "give at_seq (a positive seq) or at_time (RFC "
                            "3339), not both");
    char *json = NULL;
    size_t jl = 0;
    cairn_projection_info_t info;
    rc = cairn_projection_get_json(p, r->stream, r->stream_len, at_seq,
                                   at_time, &json, &jl, &info);
    if (rc < 0)
        return cairn__error_code(r, rc, 0, r->stream);
    sb_t o = {0};
    sb_puts(&o, "{\"stream\":");
    sb_json_str(&o, r->stream, r->stream_len);
    sb_puts(&o, ",\"projection\":");
    sb_json_str(&o, name, strlen(name));
    sb_printf(&o, ",\"seq\":%llu,\"version\":%llu,\"cached\":%s",
              (unsigned long long)info.seq, (unsigned long long)info.version,
              info.cached ? "true" : "false");
    if (!strcmp(name, "fsm")) {
        const char *st = NULL;
        cairn_stream_info_t si;
        if (cairn_log_stream_info(s->log, r->stream, r->stream_len, &si) == 0) {
            /* the name of the state the fsm projection reports */
            const char *idp = json ? strstr(json, "\"fsm_state_id\":") : NULL;
            if (idp)
                st = cairn_log_fsm_state_name(s->log, r->stream, r->stream_len,
                                              (unsigned)atoi(idp + 15));
        }
        sb_puts(&o, ",\"fsm_state\":");
        if (st)
            sb_json_str(&o, st, strlen(st));
        else
            sb_puts(&o, "null");
    }
    sb_puts(&o, ",\"state\":");
    sb_put(&o, json, jl);
    sb_puts(&o, "}\n");
    free(json);
    return cairn__respond_json(r, 200, &o, NULL);
}
