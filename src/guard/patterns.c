/*
 * patterns.c — the pattern file parser, Hyperscan compilation and scanning.
 *
 * The file format is specified in docs/GUARD.md: one pattern per line,
 *
 *     id  action  severity  types  kind[:flags]  pattern
 *
 * with the pattern running to the end of the line.  Literals are turned
 * into expressions by escaping every byte that is not a letter or digit as
 * \xHH, so the whole set compiles into one Hyperscan block-mode database
 * and one scan reports every pattern.  Expressions are compiled without
 * HS_FLAG_UTF8: matching is over bytes, which is what lets binary payloads
 * (not valid UTF-8, on which UTF-8 mode is undefined) be scanned safely;
 * non-ASCII characters are written as their UTF-8 bytes.  Every pattern
 * gets HS_FLAG_SINGLEMATCH, so a scan calls back at most once per pattern
 * however often it matches; the callback filters by event type, records
 * flag-only matches, and stops the scan at the first rejecting match.
 *
 * A set is immutable once compiled; scanners share it without locks (see
 * guard.c for how a set is published and retired).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard_internal.h"

static _Atomic uint64_t next_serial = 1;

static int set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return 0;
}

void cairn__patset_free(struct cairn__patset *set)
{
    if (!set)
        return;
    for (size_t k = 0; k < set->n; k++) {
        free(set->pats[k].expr);
        free(set->pats[k].types);
    }
    free(set->pats);
    free(set->types_text);
    free(set->name);
    hs_free_database(set->db);
    hs_free_scratch(set->proto);
    free(set);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode a literal's escapes into bytes, then into an expression that
 * matches exactly those bytes.  Returns NULL with why set on error. */
static char *literal_expr(const char *s, size_t n, const char **why)
{
    unsigned char *bytes = malloc(n * 4 + 1);
    size_t nb = 0;
    if (!bytes) {
        *why = "out of memory";
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            bytes[nb++] = (unsigned char)s[i];
            continue;
        }
        if (++i >= n)
            goto bad;
        switch (s[i]) {
        case '\\': bytes[nb++] = '\\'; break;
        case 't': bytes[nb++] = '\t'; break;
        case 'n': bytes[nb++] = '\n'; break;
        case 'r': bytes[nb++] = '\r'; break;
        case 'x': {
            int h, l;
            if (i + 2 >= n || (h = hexval(s[i + 1])) < 0 ||
                (l = hexval(s[i + 2])) < 0)
                goto bad;
            bytes[nb++] = (unsigned char)(h << 4 | l);
            i += 2;
            break;
        }
        case 'u': {
            /* \u{H...}: one code point, written as its UTF-8 bytes. */
            uint32_t cp = 0;
            size_t d = 0;
            if (i + 1 >= n || s[i + 1] != '{')
                goto bad;
            i += 2;
            while (i < n && s[i] != '}' && d < 6) {
                int h = hexval(s[i]);
                if (h < 0)
                    goto bad;
                cp = cp << 4 | (uint32_t)h;
                i++, d++;
            }
            if (i >= n || s[i] != '}' || d == 0 || cp > 0x10FFFF ||
                (cp >= 0xD800 && cp <= 0xDFFF))
                goto bad;
            if (cp < 0x80) {
                bytes[nb++] = (unsigned char)cp;
            } else if (cp < 0x800) {
                bytes[nb++] = (unsigned char)(0xC0 | cp >> 6);
                bytes[nb++] = (unsigned char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                bytes[nb++] = (unsigned char)(0xE0 | cp >> 12);
                bytes[nb++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                bytes[nb++] = (unsigned char)(0x80 | (cp & 0x3F));
            } else {
                bytes[nb++] = (unsigned char)(0xF0 | cp >> 18);
                bytes[nb++] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
                bytes[nb++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                bytes[nb++] = (unsigned char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            goto bad;
        }
    }
    if (nb == 0) {
        free(bytes);
        *why = "empty literal";
        return NULL;
    }
    char *expr = malloc(nb * 4 + 1), *w = expr;
    if (!expr) {
        free(bytes);
        *why = "out of memory";
        return NULL;
    }
    for (size_t k = 0; k < nb; k++) {
        if (isalnum(bytes[k]) && bytes[k] < 0x80)
            *w++ = (char)bytes[k];
        else
            w += sprintf(w, "\\x%02X", bytes[k]);
    }
    *w = 0;
    free(bytes);
    return expr;
bad:
    free(bytes);
    *why = "bad escape in literal (use \\\\, \\t, \\n, \\r, \\xHH, \\u{H...})";
    return NULL;
}

static int valid_id(const char *s, size_t n)
{
    if (n == 0 || n > CAIRN_GUARD_PATTERN_ID_MAX)
        return 0;
    for (size_t k = 0; k < n; k++)
        if (!isalnum((unsigned char)s[k]) && s[k] != '.' && s[k] != '-' &&
            s[k] != '_')
            return 0;
    return 1;
}

/* Next blank-separated field of [*p, end); NULL at the end. */
static const char *field(const char **p, const char *end, size_t *n)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    const char *e = s;
    while (e < end && *e != ' ' && *e != '\t')
        e++;
    *p = e;
    *n = (size_t)(e - s);
    return e > s ? s : NULL;
}

static int word_is(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && memcmp(s, w, n) == 0;
}

/* Parse the types field into pat->types; text is stored in types_text. */
static int parse_types(struct cairn__pattern *pat, const char *s, size_t n,
                       char *store)
{
    if (word_is(s, n, "*"))
        return 0;
    memcpy(store, s, n);
    store[n] = 0;
    size_t count = 1;
    for (size_t k = 0; k < n; k++)
        count += s[k] == ',';
    pat->types = calloc(count, sizeof *pat->types);
    if (!pat->types)
        return -ENOMEM;
    size_t start = 0;
    for (size_t k = 0; k <= n; k++) {
        if (k < n && s[k] != ',')
            continue;
        size_t len = k - start;
        if (len == 0 || len > CAIRN_TYPE_MAX + 1)
            return CAIRN_EGUARD_PATTERN_FILE;
        struct cairn__pat_type *t = &pat->types[pat->ntypes++];
        t->s = store + start;
        t->len = (uint32_t)len;
        if (store[start + len - 1] == '*') {
            t->prefix = 1;
            t->len--;
        }
        start = k + 1;
    }
    return 0;
}

int cairn__patset_parse(const char *text, size_t len, const char *name,
                        struct cairn__patset **out, char *err, size_t err_len)
{
    struct cairn__patset *set = calloc(1, sizeof *set);
    if (!set)
        return -ENOMEM;
    set->name = strdup(name ? name : "patterns");
    /* Type lists are copied once into one block no larger than the text. */
    set->types_text = malloc(len + 1);
    if (!set->name || !set->types_text) {
        cairn__patset_free(set);
        return -ENOMEM;
    }
    size_t types_used = 0, cap = 0;
    const char *p = text, *end = text + len;
    unsigned line = 0;
    int rc = 0;
    const char *why = NULL;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *ls = p, *le = eol;
        p = eol + 1;
        line++;
        if (le > ls && le[-1] == '\r')
            le--;
        if ((size_t)(le - ls) > CAIRN_GUARD_PATTERN_LINE_MAX) {
            why = "line longer than 4096 bytes";
            goto bad;
        }
        while (ls < le && (*ls == ' ' || *ls == '\t'))
            ls++;
        if (ls == le || *ls == '#')
            continue;
        while (le > ls && (le[-1] == ' ' || le[-1] == '\t'))
            le--;

        const char *f[5];
        size_t fl[5];
        const char *cur = ls;
        for (int k = 0; k < 5; k++)
            if (!(f[k] = field(&cur, le, &fl[k]))) {
                why = "expected: id action severity types kind pattern";
                goto bad;
            }
        while (cur < le && (*cur == ' ' || *cur == '\t'))
            cur++;
        if (cur == le) {
            why = "missing pattern";
            goto bad;
        }
        if (set->n == CAIRN_GUARD_PATTERNS_MAX) {
            why = "more than 4096 patterns";
            goto bad;
        }
        if (set->n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            struct cairn__pattern *np =
                realloc(set->pats, ncap * sizeof *np);
            if (!np) {
                rc = -ENOMEM;
                goto fail;
            }
            set->pats = np;
            cap = ncap;
        }
        struct cairn__pattern *pat = &set->pats[set->n];
        memset(pat, 0, sizeof *pat);
        pat->line = line;
        set->n++;

        if (!valid_id(f[0], fl[0])) {
            why = "id must be 1-63 of A-Z a-z 0-9 . - _";
            goto bad;
        }
        memcpy(pat->id, f[0], fl[0]);
        for (size_t k = 0; k + 1 < set->n; k++)
            if (strcmp(set->pats[k].id, pat->id) == 0) {
                why = "duplicate id";
                goto bad;
            }
        if (word_is(f[1], fl[1], "reject"))
            pat->action = CAIRN__PAT_REJECT;
        else if (word_is(f[1], fl[1], "flag"))
            pat->action = CAIRN__PAT_FLAG;
        else {
            why = "action must be reject or flag";
            goto bad;
        }
        static const char *const sev[] = {"low", "medium", "high",
                                          "critical"};
        pat->severity = -1;
        for (int k = 0; k < 4; k++)
            if (word_is(f[2], fl[2], sev[k]))
                pat->severity = k;
        if (pat->severity < 0) {
            why = "severity must be low, medium, high or critical";
            goto bad;
        }
        rc = parse_types(pat, f[3], fl[3], set->types_text + types_used);
        if (rc == CAIRN_EGUARD_PATTERN_FILE) {
            why = "types must be * or a comma list of types (prefix*)";
            goto bad;
        }
        if (rc)
            goto fail;
        types_used += fl[3] + 1;

        const char *kind = f[4], *colon = memchr(f[4], ':', fl[4]);
        size_t kind_len = colon ? (size_t)(colon - kind) : fl[4];
        int literal;
        if (word_is(kind, kind_len, "literal"))
            literal = 1;
        else if (word_is(kind, kind_len, "regex"))
            literal = 0;
        else {
            why = "kind must be literal or regex (optionally :i, :s, :m)";
            goto bad;
        }
        pat->hs_flags = HS_FLAG_SINGLEMATCH;
        for (const char *c = colon ? colon + 1 : kind + fl[4];
             c < f[4] + fl[4]; c++) {
            if (*c == 'i')
                pat->hs_flags |= HS_FLAG_CASELESS;
            else if (*c == 's' && !literal)
                pat->hs_flags |= HS_FLAG_DOTALL;
            else if (*c == 'm' && !literal)
                pat->hs_flags |= HS_FLAG_MULTILINE;
            else {
                why = "unknown kind flag (literal: i; regex: i, s, m)";
                goto bad;
            }
        }
        size_t plen = (size_t)(le - cur);
        if (literal) {
            pat->expr = literal_expr(cur, plen, &why);
            if (!pat->expr)
                goto bad;
        } else {
            pat->expr = strndup(cur, plen);
            if (!pat->expr) {
                rc = -ENOMEM;
                goto fail;
            }
        }
    }
    *out = set;
    return 0;
bad:
    set_err(err, err_len, "%s:%u: %s", set->name, line, why);
    rc = CAIRN_EGUARD_PATTERN_FILE;
fail:
    if (rc == -ENOMEM)
        set_err(err, err_len, "%s: out of memory", set->name);
    cairn__patset_free(set);
    return rc;
}

int cairn__patset_compile(struct cairn__patset *set, char *err,
                          size_t err_len)
{
    set->serial = atomic_fetch_add(&next_serial, 1);
    if (set->n == 0)
        return 0;
    const char **exprs = malloc(set->n * sizeof *exprs);
    unsigned *flags = malloc(set->n * sizeof *flags);
    unsigned *ids = malloc(set->n * sizeof *ids);
    int rc = 0;
    if (!exprs || !flags || !ids) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < set->n; k++) {
        exprs[k] = set->pats[k].expr;
        flags[k] = set->pats[k].hs_flags;
        ids[k] = (unsigned)k;
    }
    hs_compile_error_t *ce = NULL;
    if (hs_compile_multi(exprs, flags, ids, (unsigned)set->n, HS_MODE_BLOCK,
                         NULL, &set->db, &ce) != HS_SUCCESS) {
        if (ce && ce->expression >= 0 && (size_t)ce->expression < set->n) {
            const struct cairn__pattern *pat = &set->pats[ce->expression];
            set_err(err, err_len, "%s:%u: pattern '%s': Hyperscan: %s",
                    set->name, pat->line, pat->id, ce->message);
        } else {
            set_err(err, err_len, "%s: Hyperscan: %s", set->name,
                    ce ? ce->message : "compile failed");
        }
        hs_free_compile_error(ce);
        set->db = NULL;
        rc = CAIRN_EGUARD_PATTERN_COMPILE;
        goto out;
    }
    if (hs_alloc_scratch(set->db, &set->proto) != HS_SUCCESS) {
        set_err(err, err_len, "%s: Hyperscan scratch allocation failed",
                set->name);
        rc = -ENOMEM;
    }
out:
    free(exprs);
    free(flags);
    free(ids);
    return rc;
}

int cairn__patset_load(const char *path, struct cairn__patset **out,
                       char *err, size_t err_len)
{
    int rc;
    if (!path) {
        rc = cairn__patset_parse(cairn__guard_default_patterns,
                                 strlen(cairn__guard_default_patterns),
                                 "patterns.default", out, err, err_len);
    } else if (path[0] == 0) {
        rc = cairn__patset_parse("", 0, "none", out, err, err_len);
    } else {
        FILE *f = fopen(path, "rb");
        if (!f) {
            set_err(err, err_len, "%s: %s", path, strerror(errno));
            return CAIRN_EGUARD_PATTERN_FILE;
        }
        /* Bounded read: more than the largest legal file is an error. */
        size_t max = (size_t)CAIRN_GUARD_PATTERNS_MAX *
                     (CAIRN_GUARD_PATTERN_LINE_MAX + 1) + 1, n = 0;
        size_t cap = 4096;
        char *text = malloc(cap);
        while (text) {
            if (n == cap) {
                char *nt = cap >= max ? NULL : realloc(text, cap * 2);
                if (!nt) {
                    free(text);
                    text = NULL;
                    break;
                }
                text = nt;
                cap *= 2;
            }
            size_t got = fread(text + n, 1, cap - n, f);
            n += got;
            if (got == 0)
                break;
        }
        int read_err = ferror(f);
        fclose(f);
        if (!text || read_err) {
            free(text);
            set_err(err, err_len, "%s: cannot read (too large or I/O error)",
                    path);
            return CAIRN_EGUARD_PATTERN_FILE;
        }
        rc = cairn__patset_parse(text, n, path, out, err, err_len);
        free(text);
    }
    if (rc)
        return rc;
    if ((rc = cairn__patset_compile(*out, err, err_len)) != 0) {
        cairn__patset_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- scanning -------------------------------------------------------- */

struct scan_ctx {
    const struct cairn__patset *set;
    const char *type;
    size_t type_len;
    cairn_guard_result_t *res;
};

static int applies(const struct cairn__pattern *pat, const char *type,
                   size_t type_len)
{
    if (!pat->types)
        return 1;
    for (size_t k = 0; k < pat->ntypes; k++) {
        const struct cairn__pat_type *t = &pat->types[k];
        if (t->prefix ? type_len >= t->len && memcmp(type, t->s, t->len) == 0
                      : type_len == t->len && memcmp(type, t->s, t->len) == 0)
            return 1;
    }
    return 0;
}

static int on_match(unsigned int id, unsigned long long from,
                    unsigned long long to, unsigned int flags, void *ctx)
{
    struct scan_ctx *sc = ctx;
    const struct cairn__pattern *pat = &sc->set->pats[id];
    if (!applies(pat, sc->type, sc->type_len))
        return 0;
    cairn_guard_result_t *res = sc->res;
    if (pat->action == CAIRN__PAT_REJECT) {
        memcpy(res->pattern_id, pat->id, sizeof res->pattern_id);
        res->pattern_severity = pat->severity;
        res->offset = to;
        return 1; /* stop: the payload is rejected */
    }
    if (res->nflagged < CAIRN_GUARD_FLAGS_MAX)
        memcpy(res->flagged[res->nflagged], pat->id, sizeof pat->id);
    res->nflagged++;
    return 0;
}

int cairn__patset_scan(const struct cairn__patset *set, const char *type,
                       size_t type_len, const unsigned char *data,
                       size_t len, cairn_guard_result_t *res)
{
    /* No pattern matches empty input (Hyperscan refuses such patterns
     * without HS_FLAG_ALLOWEMPTY), and data may be NULL when len is 0. */
    if (!set || !set->db || len == 0)
        return 0;
    if (len > UINT32_MAX)
        return cairn__guard_fail(res, CAIRN_EGUARD_TOO_LARGE, NULL, 0, 0);
    struct cairn__guard_ws *ws = cairn__guard_ws(res);
    if (!ws)
        return cairn__guard_fail(res, -ENOMEM, NULL, 0, 0);
    if (ws->scratch_serial != set->serial) {
        /* Grows an existing scratch only if this database needs more. */
        hs_error_t he = ws->scratch ? hs_alloc_scratch(set->db, &ws->scratch)
                                    : hs_clone_scratch(set->proto,
                                                       &ws->scratch);
        if (he != HS_SUCCESS)
            return cairn__guard_fail(res, -ENOMEM, NULL, 0, 0);
        ws->scratch_serial = set->serial;
    }
    struct scan_ctx sc = {set, type ? type : "", type ? type_len : 0, res};
    hs_error_t he = hs_scan(set->db, (const char *)data, (unsigned)len, 0,
                            ws->scratch, on_match, &sc);
    if (he == HS_SCAN_TERMINATED)
        return cairn__guard_fail(res, CAIRN_EGUARD_PATTERN, NULL, 0,
                                 res->offset);
    if (he != HS_SUCCESS)
        return cairn__guard_fail(res, -EINVAL, NULL, 0, 0);
    return 0;
}
