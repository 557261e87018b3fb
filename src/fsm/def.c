/*
 * def.c — state machine definitions: the line parser, the builder that
 * resolves names and expands wildcards into a transition table, and the
 * read-only lookups (including the one the log calls on every append to a
 * bound stream).
 *
 * DESIGN.  Parsing happens in two steps so that a line may use a name
 * declared further down and "*" always means the complete state set:
 * cairn_fsm_builder_add() checks one line's syntax and keeps its tokens;
 * cairn_fsm_builder_finish() numbers the states (initial = 0, then first
 * appearance), numbers the triggers, expands every transition line into
 * (state, trigger) cells of a dense nstates x ntriggers table of 16-bit
 * targets, refusing a cell written twice, and builds the open-addressed
 * trigger index.  After finish the definition is immutable (guards aside,
 * which are attached before sharing), so lookups need no synchronisation:
 * a definition published to other threads by any release/acquire pair (a
 * mutex, thread creation, an atomic pointer) is read with plain loads.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm_internal.h"

/* ---- errors --------------------------------------------------------------- */

static int def_error(cairn_fsm_error_t *err, unsigned line, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));

static int def_error(cairn_fsm_error_t *err, unsigned line, const char *fmt,
                     ...)
{
    if (err) {
        size_t n = 0;
        err->line = line;
        if (line > 0)
            n = (size_t)snprintf(err->message, sizeof err->message,
                                 "line %u: ", line);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message + n, sizeof err->message - n, fmt, ap);
        va_end(ap);
    }
    return CAIRN_EFSM_DEFINITION;
}

/* ---- lines kept by the builder ------------------------------------------- */

typedef struct tok {
    uint32_t off;
    uint32_t len;
} tok_t;

enum line_kind { LINE_INITIAL, LINE_STATE, LINE_TRANSITION };
enum from_mode { FROM_LIST, FROM_ALL, FROM_ALL_BUT };

typedef struct def_line {
    unsigned line;
    enum line_kind kind;
    enum from_mode from_mode;
    char *text;    /* the value, copied; tokens point into it */
    tok_t *toks;   /* nfrom source names, then ntrig triggers */
    uint32_t nfrom, ntrig;
    tok_t to;      /* target (transition) or the name (initial) */
} def_line_t;

struct cairn_fsm_builder {
    def_line_t *lines;
    size_t n, cap;
    int finished;
};

static int is_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
           c == '/' || c == '-';
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
           c == '\f';
}

/* Trim [*b, *e) of blanks. */
static void trim(const char *s, size_t *b, size_t *e)
{
    while (*b < *e && is_space(s[*b]))
        (*b)++;
    while (*e > *b && is_space(s[*e - 1]))
        (*e)--;
}

/* Check that s[b, e) (already trimmed) is one valid name. */
static int check_name(const char *s, size_t b, size_t e, unsigned line,
                      const char *what, cairn_fsm_error_t *err)
{
    if (b == e)
        return def_error(err, line, "empty %s name", what);
    if (e - b > CAIRN_FSM_NAME_MAX)
        return def_error(err, line, "%s name longer than %u bytes", what,
                         (unsigned)CAIRN_FSM_NAME_MAX);
    if (s[b] == '-')
        return def_error(err, line, "%s name '%.*s' starts with '-'", what,
                         (int)(e - b), s + b);
    for (size_t i = b; i < e; i++)
        if (!is_name_char(s[i]))
            return def_error(err, line,
                             "bad character '%c' in %s name '%.*s' "
                             "(names use A-Z a-z 0-9 _ . : / -)",
                             s[i], what, (int)(e - b), s + b);
    return 0;
}

/* Split s[b, e) on ',' and '|' into names appended to *toks. */
static int parse_list(const char *s, size_t b, size_t e, unsigned line,
                      const char *what, tok_t **toks, uint32_t *ntoks,
                      uint32_t *count, cairn_fsm_error_t *err)
{
    *count = 0;
    size_t start = b;
    for (size_t i = b; i <= e; i++) {
        if (i < e && s[i] != ',' && s[i] != '|')
            continue;
        size_t nb = start, ne = i;
        trim(s, &nb, &ne);
        int rc = check_name(s, nb, ne, line, what, err);
        if (rc)
            return rc;
        tok_t *t = realloc(*toks, (*ntoks + 1) * sizeof *t);
        if (!t)
            return -ENOMEM;
        *toks = t;
        t[*ntoks].off = (uint32_t)nb;
        t[*ntoks].len = (uint32_t)(ne - nb);
        (*ntoks)++;
        (*count)++;
        start = i + 1;
    }
    return 0;
}

/* "FROM + TRIGGERS -> TARGET" into l. */
static int parse_transition(def_line_t *l, cairn_fsm_error_t *err)
{
    const char *s = l->text;
    size_t n = strlen(s);
    const char *arrow = strstr(s, "->");
    if (!arrow)
        return def_error(err, l->line,
                         "expected 'FROM + TRIGGER -> TO', no '->' in '%s'",
                         s);
    if (strstr(arrow + 2, "->"))
        return def_error(err, l->line, "more than one '->' in '%s'", s);
    size_t a = (size_t)(arrow - s);
    const char *plus = memchr(s, '+', a);
    if (!plus)
        return def_error(err, l->line,
                         "expected 'FROM + TRIGGER -> TO', no '+' before "
                         "'->' in '%s'",
                         s);
    size_t p = (size_t)(plus - s);
    if (memchr(plus + 1, '+', n - p - 1))
        return def_error(err, l->line, "more than one '+' in '%s'", s);

    /* target */
    size_t tb = a + 2, te = n;
    trim(s, &tb, &te);
    int rc = check_name(s, tb, te, l->line, "target state", err);
    if (rc)
        return rc;
    l->to.off = (uint32_t)tb;
    l->to.len = (uint32_t)(te - tb);

    /* sources */
    uint32_t ntoks = 0;
    size_t fb = 0, fe = p;
    trim(s, &fb, &fe);
    if (fb < fe && s[fb] == '*') {
        size_t rb = fb + 1, re = fe;
        trim(s, &rb, &re);
        if (rb == re) {
            l->from_mode = FROM_ALL;
            l->nfrom = 0;
        } else if (s[rb] == '-') {
            l->from_mode = FROM_ALL_BUT;
            rc = parse_list(s, rb + 1, re, l->line, "excluded state", &l->toks,
                            &ntoks, &l->nfrom, err);
            if (rc)
                return rc;
        } else {
            return def_error(err, l->line,
                             "expected '*' or '* - STATE, ...' before '+', "
                             "got '%.*s'",
                             (int)(fe - fb), s + fb);
        }
    } else {
        l->from_mode = FROM_LIST;
        rc = parse_list(s, fb, fe, l->line, "source state", &l->toks, &ntoks,
                        &l->nfrom, err);
        if (rc)
            return rc;
    }
    /* triggers */
    return parse_list(s, p + 1, a, l->line, "trigger", &l->toks, &ntoks,
                      &l->ntrig, err);
}

CAIRN_EXPORT int cairn_fsm_builder_open(cairn_fsm_builder_t **out)
{
    cairn_fsm_builder_t *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    *out = b;
    return 0;
}

CAIRN_EXPORT void cairn_fsm_builder_close(cairn_fsm_builder_t *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->lines[i].text);
        free(b->lines[i].toks);
    }
    free(b->lines);
    free(b);
}

CAIRN_EXPORT int cairn_fsm_builder_add(cairn_fsm_builder_t *b,
                                       const char *key, const char *value,
                                       unsigned line, cairn_fsm_error_t *err)
{
    enum line_kind kind;
    if (!strcmp(key, "initial"))
        kind = LINE_INITIAL;
    else if (!strcmp(key, "state"))
        kind = LINE_STATE;
    else if (!strcmp(key, "transition"))
        kind = LINE_TRANSITION;
    else
        return def_error(err, line,
                         "unknown key '%s' (expected initial, state or "
                         "transition)",
                         key);
    if (b->finished)
        return def_error(err, line, "definition already finished");
    if (b->n >= CAIRN_FSM_DEF_LINES_MAX)
        return def_error(err, line, "more than %u lines",
                         (unsigned)CAIRN_FSM_DEF_LINES_MAX);
    size_t vlen = strlen(value);
    if (vlen > CAIRN_FSM_DEF_LINE_MAX)
        return def_error(err, line, "value longer than %u bytes",
                         (unsigned)CAIRN_FSM_DEF_LINE_MAX);
    /* Strip blanks and one pair of surrounding double quotes. */
    size_t vb = 0, ve = vlen;
    trim(value, &vb, &ve);
    if (ve - vb >= 2 && value[vb] == '"' && value[ve - 1] == '"') {
        vb++;
        ve--;
        trim(value, &vb, &ve);
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 16;
        def_line_t *nl = realloc(b->lines, cap * sizeof *nl);
        if (!nl)
            return -ENOMEM;
        b->lines = nl;
        b->cap = cap;
    }
    def_line_t *l = &b->lines[b->n];
    memset(l, 0, sizeof *l);
    l->line = line;
    l->kind = kind;
    l->text = malloc(ve - vb + 1);
    if (!l->text)
        return -ENOMEM;
    memcpy(l->text, value + vb, ve - vb);
    l->text[ve - vb] = '\0';

    int rc = 0;
    size_t tb = 0, te = ve - vb;
    uint32_t ntoks = 0;
    switch (kind) {
    case LINE_INITIAL:
        rc = check_name(l->text, tb, te, line, "initial state", err);
        l->to.off = 0;
        l->to.len = (uint32_t)te;
        break;
    case LINE_STATE:
        rc = parse_list(l->text, tb, te, line, "state", &l->toks, &ntoks,
                        &l->nfrom, err);
        break;
    case LINE_TRANSITION:
        rc = parse_transition(l, err);
        break;
    }
    if (rc) {
        free(l->text);
        free(l->toks);
        return rc;
    }
    b->n++;
    return 0;
}

/* ---- resolving names ------------------------------------------------------ */

/* Names being collected: appended in order, found by linear scan (only at
 * build time; at most 256 of each). */
typedef struct collect {
    uint32_t count;
    const char *name[CAIRN_FSM_STATES_MAX];
    uint32_t len[CAIRN_FSM_STATES_MAX];
    unsigned line[CAIRN_FSM_STATES_MAX]; /* where it first appeared */
} collect_t;

static int collect_find(const collect_t *c, const char *s, uint32_t n)
{
    for (uint32_t i = 0; i < c->count; i++)
        if (c->len[i] == n && memcmp(c->name[i], s, n) == 0)
            return (int)i;
    return -1;
}

/* Find or add; returns the number, or an error. */
static int collect_add(collect_t *c, const char *s, uint32_t n,
                       unsigned line, const char *what, uint32_t max,
                       cairn_fsm_error_t *err)
{
    int i = collect_find(c, s, n);
    if (i >= 0)
        return i;
    if (c->count == max)
        return def_error(err, line, "more than %u %s ('%.*s' would be "
                         "number %u)",
                         max, what, (int)n, s, max);
    c->name[c->count] = s;
    c->len[c->count] = n;
    c->line[c->count] = line;
    return (int)c->count++;
}

/* Build a name index (arena + hash) from collected names. */
static int index_build(cairn__fsm_names_t *ix, const collect_t *c)
{
    size_t total = 0;
    for (uint32_t i = 0; i < c->count; i++)
        total += c->len[i] + 1;
    ix->arena = malloc(total ? total : 1);
    if (!ix->arena)
        return -ENOMEM;
    ix->count = c->count;
    ix->len_min = UINT32_MAX;
    ix->len_max = 0;
    uint32_t slots = 8;
    while (slots < 2 * c->count)
        slots *= 2;
    ix->mask = slots - 1;
    ix->max_probe = 0;
    memset(ix->slot, 0, sizeof ix->slot);
    size_t off = 0;
    for (uint32_t i = 0; i < c->count; i++) {
        memcpy(ix->arena + off, c->name[i], c->len[i]);
        ix->arena[off + c->len[i]] = '\0';
        ix->off[i] = (uint32_t)off;
        ix->len[i] = (uint8_t)c->len[i];
        off += c->len[i] + 1;
        if (c->len[i] < ix->len_min)
            ix->len_min = c->len[i];
        if (c->len[i] > ix->len_max)
            ix->len_max = c->len[i];
        uint32_t h = cairn__fsm_hash(c->name[i], c->len[i]) & ix->mask;
        uint32_t probe = 0;
        while (ix->slot[h] != 0) {
            h = (h + 1) & ix->mask;
            probe++;
        }
        ix->slot[h] = (uint16_t)(i + 1);
        if (probe > ix->max_probe)
            ix->max_probe = probe;
    }
    return 0;
}

#define TOK(l, t) ((l)->text + (t).off), ((t).len)

/* Number every state.  Initial first (0); then the "state" lines in order
 * if there are any (explicit mode), else every name used as a source or a
 * target in order of appearance.  Excluded names are checked later. */
static int resolve_states(const cairn_fsm_builder_t *b, collect_t *st,
                          cairn_fsm_error_t *err)
{
    const def_line_t *initial = NULL;
    int explicit_states = 0;
    for (size_t i = 0; i < b->n; i++) {
        const def_line_t *l = &b->lines[i];
        if (l->kind == LINE_INITIAL) {
            if (initial)
                return def_error(err, l->line,
                                 "initial state given twice (first on "
                                 "line %u)",
                                 initial->line);
            initial = l;
        } else if (l->kind == LINE_STATE) {
            explicit_states = 1;
        }
    }
    if (!initial)
        return def_error(err, 0, "no initial state (add 'initial = NAME')");
    int rc = collect_add(st, TOK(initial, initial->to), initial->line,
                         "states", CAIRN_FSM_STATES_MAX, err);
    if (rc < 0)
        return rc;

    int initial_listed = 0; /* the initial state may be listed once */
    for (size_t i = 0; explicit_states && i < b->n; i++) {
        const def_line_t *l = &b->lines[i];
        if (l->kind != LINE_STATE)
            continue;
        for (uint32_t k = 0; k < l->nfrom; k++) {
            int found = collect_find(st, TOK(l, l->toks[k]));
            if (found > 0 || (found == 0 && initial_listed))
                return def_error(err, l->line,
                                 "state '%.*s' declared twice (first on "
                                 "line %u)",
                                 (int)l->toks[k].len,
                                 l->text + l->toks[k].off,
                                 st->line[found]);
            if (found == 0) {
                initial_listed = 1;
                st->line[0] = l->line;
                continue;
            }
            rc = collect_add(st, TOK(l, l->toks[k]), l->line, "states",
                             CAIRN_FSM_STATES_MAX, err);
            if (rc < 0)
                return rc;
        }
    }

    for (size_t i = 0; i < b->n; i++) {
        const def_line_t *l = &b->lines[i];
        if (l->kind != LINE_TRANSITION)
            continue;
        for (uint32_t k = 0; k <= l->nfrom; k++) {
            tok_t t;
            if (k < l->nfrom) {
                if (l->from_mode != FROM_LIST)
                    continue;
                t = l->toks[k];
            } else {
                t = l->to;
            }
            if (explicit_states) {
                if (collect_find(st, TOK(l, t)) < 0)
                    return def_error(err, l->line,
                                     "unknown state '%.*s' (not in any "
                                     "'state' line)",
                                     (int)t.len, l->text + t.off);
                continue;
            }
            rc = collect_add(st, TOK(l, t), l->line, "states",
                             CAIRN_FSM_STATES_MAX, err);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int fill_cell(cairn_fsm_def_t *def, unsigned *lines,
                     const collect_t *st, const collect_t *tr,
                     const def_line_t *l, uint32_t from, uint32_t trig,
                     uint32_t to, cairn_fsm_error_t *err)
{
    size_t cell = (size_t)from * def->ntriggers + trig;
    if (def->next[cell] != CAIRN__FSM_NONE)
        return def_error(err, l->line,
                         "duplicate transition %.*s + %.*s (already "
                         "defined on line %u)",
                         (int)st->len[from], st->name[from],
                         (int)tr->len[trig], tr->name[trig], lines[cell]);
    def->next[cell] = (uint16_t)to;
    lines[cell] = l->line;
    def->ntransitions++;
    return 0;
}

static int expand(cairn_fsm_def_t *def, const cairn_fsm_builder_t *b,
                  const collect_t *st, const collect_t *tr,
                  cairn_fsm_error_t *err)
{
    size_t cells = (size_t)def->nstates * def->ntriggers;
    unsigned *lines = calloc(cells, sizeof *lines);
    if (!lines)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        const def_line_t *l = &b->lines[i];
        if (l->kind != LINE_TRANSITION)
            continue;
        uint8_t from_set[CAIRN_FSM_STATES_MAX];
        memset(from_set, l->from_mode == FROM_LIST ? 0 : 1, sizeof from_set);
        for (uint32_t k = 0; k < l->nfrom; k++) {
            int s = collect_find(st, TOK(l, l->toks[k]));
            if (s < 0) {
                rc = def_error(err, l->line,
                               "unknown state '%.*s' after '* -'",
                               (int)l->toks[k].len, l->text + l->toks[k].off);
                break;
            }
            from_set[s] = l->from_mode == FROM_LIST;
        }
        if (rc)
            break;
        uint32_t nfrom = 0;
        for (uint32_t s = 0; s < def->nstates; s++)
            nfrom += from_set[s];
        if (nfrom == 0) {
            rc = def_error(err, l->line, "no source state left after '* -'");
            break;
        }
        uint32_t to = (uint32_t)collect_find(st, TOK(l, l->to));
        for (uint32_t k = 0; k < l->ntrig && rc == 0; k++) {
            uint32_t trig =
                (uint32_t)collect_find(tr, TOK(l, l->toks[l->nfrom + k]));
            if (l->from_mode == FROM_LIST) {
                /* In line order, so a repeated name is reported as one. */
                for (uint32_t f = 0; f < l->nfrom && rc == 0; f++)
                    rc = fill_cell(def, lines, st, tr, l,
                                   (uint32_t)collect_find(
                                       st, TOK(l, l->toks[f])),
                                   trig, to, err);
            } else {
                for (uint32_t s = 0; s < def->nstates && rc == 0; s++)
                    if (from_set[s])
                        rc = fill_cell(def, lines, st, tr, l, s, trig, to,
                                       err);
            }
        }
    }
    free(lines);
    return rc;
}

CAIRN_EXPORT int cairn_fsm_builder_finish(cairn_fsm_builder_t *b,
                                          cairn_fsm_def_t **out,
                                          cairn_fsm_error_t *err)
{
    if (b->finished)
        return def_error(err, 0, "definition already finished");
    b->finished = 1;
    collect_t *st = calloc(1, sizeof *st), *tr = calloc(1, sizeof *tr);
    cairn_fsm_def_t *def = calloc(1, sizeof *def);
    int rc = -ENOMEM;
    if (!st || !tr || !def)
        goto fail;
    rc = resolve_states(b, st, err);
    if (rc < 0)
        goto fail;
    int any = 0;
    for (size_t i = 0; i < b->n; i++) {
        const def_line_t *l = &b->lines[i];
        if (l->kind != LINE_TRANSITION)
            continue;
        any = 1;
        for (uint32_t k = 0; k < l->ntrig; k++) {
            rc = collect_add(tr, TOK(l, l->toks[l->nfrom + k]), l->line,
                             "triggers", CAIRN_FSM_TRIGGERS_MAX, err);
            if (rc < 0)
                goto fail;
        }
    }
    if (!any) {
        rc = def_error(err, 0, "no transition (add 'transition = FROM + "
                               "TRIGGER -> TO')");
        goto fail;
    }
    def->nstates = st->count;
    def->ntriggers = tr->count;
    size_t cells = (size_t)def->nstates * def->ntriggers;
    def->next = malloc(cells * sizeof *def->next);
    rc = -ENOMEM;
    if (!def->next)
        goto fail;
    for (size_t i = 0; i < cells; i++)
        def->next[i] = CAIRN__FSM_NONE;
    rc = expand(def, b, st, tr, err);
    if (rc < 0)
        goto fail;
    rc = index_build(&def->states, st);
    if (rc < 0)
        goto fail;
    rc = index_build(&def->triggers, tr);
    if (rc < 0)
        goto fail;
    free(st);
    free(tr);
    *out = def;
    return 0;
fail:
    free(st);
    free(tr);
    cairn_fsm_def_free(def);
    if (rc == -ENOMEM && err)
        def_error(err, 0, "out of memory");
    return rc;
}

CAIRN_EXPORT int cairn_fsm_def_parse(const char *text, size_t len,
                                     cairn_fsm_def_t **out,
                                     cairn_fsm_error_t *err)
{
    cairn_fsm_builder_t *b;
    int rc = cairn_fsm_builder_open(&b);
    if (rc)
        return rc;
    char *buf = malloc(CAIRN_FSM_DEF_LINE_MAX + 1);
    if (!buf) {
        cairn_fsm_builder_close(b);
        return -ENOMEM;
    }
    unsigned line = 0;
    size_t pos = 0;
    while (pos < len && rc == 0) {
        line++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t lb = pos, le = end;
        pos = end + 1;
        trim(text, &lb, &le);
        if (lb == le || text[lb] == '#' || text[lb] == ';')
            continue;
        if (le - lb > CAIRN_FSM_DEF_LINE_MAX) {
            rc = def_error(err, line, "line longer than %u bytes",
                           (unsigned)CAIRN_FSM_DEF_LINE_MAX);
            break;
        }
        if (memchr(text + lb, '\0', le - lb)) {
            rc = def_error(err, line, "NUL byte in the line");
            break;
        }
        const char *eq = memchr(text + lb, '=', le - lb);
        if (!eq) {
            rc = def_error(err, line, "expected 'key = value', got '%.*s'",
                           (int)(le - lb), text + lb);
            break;
        }
        size_t kb = lb, ke = (size_t)(eq - text);
        trim(text, &kb, &ke);
        size_t klen = ke - kb;
        if (klen == 0 || klen > 32) {
            rc = def_error(err, line, "missing or overlong key before '='");
            break;
        }
        char key[33];
        memcpy(key, text + kb, klen);
        key[klen] = '\0';
        size_t vlen = le - (size_t)(eq + 1 - text);
        memcpy(buf, eq + 1, vlen);
        buf[vlen] = '\0';
        rc = cairn_fsm_builder_add(b, key, buf, line, err);
    }
    free(buf);
    if (rc == 0)
        rc = cairn_fsm_builder_finish(b, out, err);
    cairn_fsm_builder_close(b);
    return rc;
}

CAIRN_EXPORT void cairn_fsm_def_free(cairn_fsm_def_t *def)
{
    if (!def)
        return;
    free(def->next);
    free(def->guards);
    free(def->states.arena);
    free(def->triggers.arena);
    free(def);
}

CAIRN_EXPORT int cairn_fsm_def_set_guard(cairn_fsm_def_t *def, uint32_t from,
                                         uint32_t trigger,
                                         cairn_fsm_guard_fn fn)
{
    if (trigger >= def->ntriggers ||
        (from != CAIRN_FSM_ANY_STATE && from >= def->nstates))
        return CAIRN_EFSM_INVALID_TRANSITION;
    uint32_t lo = from == CAIRN_FSM_ANY_STATE ? 0 : from;
    uint32_t hi = from == CAIRN_FSM_ANY_STATE ? def->nstates : from + 1;
    int found = 0;
    for (uint32_t s = lo; s < hi; s++)
        found |= def->next[(size_t)s * def->ntriggers + trigger] !=
                 CAIRN__FSM_NONE;
    if (!found)
        return CAIRN_EFSM_INVALID_TRANSITION;
    if (!def->guards) {
        if (!fn)
            return 0;
        def->guards = calloc((size_t)def->nstates * def->ntriggers,
                             sizeof *def->guards);
        if (!def->guards)
            return -ENOMEM;
    }
    for (uint32_t s = lo; s < hi; s++) {
        size_t cell = (size_t)s * def->ntriggers + trigger;
        if (def->next[cell] != CAIRN__FSM_NONE)
            def->guards[cell] = fn;
    }
    return 0;
}

/* ---- lookups ---------------------------------------------------------------- */

CAIRN_EXPORT int cairn_fsm_def_next_id(const cairn_fsm_def_t *def,
                                       uint32_t state, uint32_t trigger,
                                       uint32_t *next)
{
    if (trigger >= def->ntriggers)
        return 1;
    if (state >= def->nstates)
        return CAIRN_EFSM_INVALID_TRANSITION;
    uint32_t to = def->next[(size_t)state * def->ntriggers + trigger];
    if (to == CAIRN__FSM_NONE)
        return CAIRN_EFSM_INVALID_TRANSITION;
    *next = to;
    return 0;
}

CAIRN_EXPORT int cairn_fsm_def_next(const cairn_fsm_def_t *def,
                                    uint32_t state, const char *trigger,
                                    size_t trigger_len, uint32_t *next)
{
    int t = cairn__fsm_find(&def->triggers, trigger, trigger_len);
    if (t < 0)
        return 1;
    return cairn_fsm_def_next_id(def, state, (uint32_t)t, next);
}

CAIRN_EXPORT int cairn_fsm_def_state_id(const cairn_fsm_def_t *def,
                                        const char *name, size_t len,
                                        uint32_t *id)
{
    int s = cairn__fsm_find(&def->states, name, len);
    if (s < 0)
        return CAIRN_EFSM_UNKNOWN_NAME;
    *id = (uint32_t)s;
    return 0;
}

CAIRN_EXPORT int cairn_fsm_def_trigger_id(const cairn_fsm_def_t *def,
                                          const char *name, size_t len,
                                          uint32_t *id)
{
    int t = cairn__fsm_find(&def->triggers, name, len);
    if (t < 0)
        return CAIRN_EFSM_UNKNOWN_NAME;
    *id = (uint32_t)t;
    return 0;
}

CAIRN_EXPORT const char *cairn_fsm_def_state_name(const cairn_fsm_def_t *def,
                                                  uint32_t id)
{
    return id < def->nstates ? def->states.arena + def->states.off[id] : NULL;
}

CAIRN_EXPORT const char *
cairn_fsm_def_trigger_name(const cairn_fsm_def_t *def, uint32_t id)
{
    return id < def->ntriggers ? def->triggers.arena + def->triggers.off[id]
                               : NULL;
}

CAIRN_EXPORT uint32_t cairn_fsm_def_states(const cairn_fsm_def_t *def)
{
    return def->nstates;
}

CAIRN_EXPORT uint32_t cairn_fsm_def_triggers(const cairn_fsm_def_t *def)
{
    return def->ntriggers;
}

CAIRN_EXPORT uint32_t cairn_fsm_def_transitions(const cairn_fsm_def_t *def)
{
    return def->ntransitions;
}
