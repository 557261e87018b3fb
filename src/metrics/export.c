/*
 * export.c — exposition of a registry as Prometheus text 0.0.4,
 * OpenMetrics 1.0 or JSON, the output buffer, and content negotiation on
 * an HTTP Accept header.
 *
 * DESIGN.  An export holds reg->mu (the structure lock) while it walks the
 * families and children, so the lists cannot change under it; values are
 * read with the providers' consistent reads (seqlock reads never block the
 * writers).  Output goes to a caller-owned buffer through a small writer
 * that remembers the first error; on failure the buffer is cut back to its
 * length before the export, so a caller never serves half a page.
 *
 * Numbers.  Integers (counter values, bucket counts) are printed exactly.
 * Doubles are printed in the shortest of %.15g, %.16g and %.17g that reads
 * back to the same double, so nothing is lost (plain %g keeps 6 digits);
 * NaN, +Inf and -Inf are spelled as Prometheus expects (JSON: as strings).
 * OpenMetrics wants canonical numbers in `le`: a whole number gets ".0".
 * printf's decimal point follows LC_NUMERIC, so a ',' is turned back into
 * '.' for hosts that set a locale.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "metrics/metrics_internal.h"

/* ---- output buffer ------------------------------------------------------ */

CAIRN_EXPORT void cairn_metrics_buf_free(cairn_metrics_buf_t *buf)
{
    if (buf == NULL)
        return;
    if (!buf->fixed)
        free(buf->data);
    memset(buf, 0, sizeof(*buf));
}

typedef struct writer {
    cairn_metrics_buf_t *buf;
    int err;
} writer_t;

/* Make room for n more bytes plus the trailing NUL. */
static int reserve(writer_t *w, size_t n)
{
    cairn_metrics_buf_t *b = w->buf;
    if (w->err != 0)
        return w->err;
    if (b->len + n + 1 <= b->cap)
        return 0;
    if (b->fixed)
        return w->err = CAIRN_EMETRIC_BUFFER;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return w->err = -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

static void put(writer_t *w, const char *s, size_t n)
{
    if (n == 0 || reserve(w, n) != 0)
        return;
    memcpy(w->buf->data + w->buf->len, s, n);
    w->buf->len += n;
}

static void puts_(writer_t *w, const char *s) { put(w, s, strlen(s)); }

static void putc_(writer_t *w, char ch) { put(w, &ch, 1); }

/* ---- numbers -------------------------------------------------------------- */

static size_t fmt_u64(char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

static size_t fmt_i64(char *out, int64_t v)
{
    if (v < 0) {
        out[0] = '-';
        return 1 + fmt_u64(out + 1, (uint64_t)0 - (uint64_t)v);
    }
    return fmt_u64(out, (uint64_t)v);
}

/*
 * The shortest round-tripping text of v (at most 31 bytes + NUL).
 * canonical: OpenMetrics form, where a whole number keeps a ".0".
 */
static size_t fmt_double(char *out, double v, int canonical)
{
    if (isnan(v))
        return (size_t)sprintf(out, "NaN");
    if (isinf(v))
        return (size_t)sprintf(out, v > 0 ? "+Inf" : "-Inf");
    size_t n;
    /* Whole numbers below 2^53 are exact as integers: print them without
     * going through printf (the common case for sums of counts). */
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        n = fmt_i64(out, (int64_t)v);
    } else {
        int len = 0;
        for (int prec = 15; prec <= 17; prec++) {
            len = snprintf(out, 32, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
        n = (size_t)len;
        for (size_t i = 0; i < n; i++)
            if (out[i] == ',')
                out[i] = '.';
    }
    if (canonical && strpbrk(out, ".eE") == NULL) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = '\0';
    }
    return n;
}

static void put_u64(writer_t *w, uint64_t v)
{
    char tmp[24];
    put(w, tmp, fmt_u64(tmp, v));
}

static void put_i64(writer_t *w, int64_t v)
{
    char tmp[24];
    put(w, tmp, fmt_i64(tmp, v));
}

static void put_double(writer_t *w, double v, int canonical)
{
    char tmp[40];
    put(w, tmp, fmt_double(tmp, v, canonical));
}

/* A double as a JSON value: a number, or "NaN" / "+Inf" / "-Inf". */
static void put_json_double(writer_t *w, double v)
{
    char tmp[40];
    size_t n = fmt_double(tmp, v, 0);
    if (!isfinite(v)) {
        putc_(w, '"');
        put(w, tmp, n);
        putc_(w, '"');
    } else {
        put(w, tmp, n);
    }
}

/* ---- escaping ------------------------------------------------------------- */

/* Text-format escaping: backslash and newline always, the double quote
 * when quote is set (label values; OpenMetrics help). */
static void put_escaped(writer_t *w, const char *s, int quote)
{
    const char *run = s;
    for (const char *p = s; *p != '\0'; p++) {
        const char *rep = NULL;
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '\n')
            rep = "\\n";
        else if (*p == '"' && quote)
            rep = "\\\"";
        if (rep != NULL) {
            put(w, run, (size_t)(p - run));
            put(w, rep, 2);
            run = p + 1;
        }
    }
    put(w, run, strlen(run));
}

/* A JSON string with quotes; input is valid UTF-8 (checked at
 * registration), so only '"', '\\' and control characters need escapes. */
static void put_json_string(writer_t *w, const char *s)
{
    putc_(w, '"');
    const char *run = s;
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch != '"' && ch != '\\' && ch >= 0x20)
            continue;
        put(w, run, (size_t)(p - run));
        char esc[8];
        if (ch == '"')
            put(w, "\\\"", 2);
        else if (ch == '\\')
            put(w, "\\\\", 2);
        else if (ch == '\n')
            put(w, "\\n", 2);
        else if (ch == '\t')
            put(w, "\\t", 2);
        else if (ch == '\r')
            put(w, "\\r", 2);
        else
            put(w, esc, (size_t)snprintf(esc, sizeof(esc), "\\u%04x", ch));
        run = p + 1;
    }
    put(w, run, strlen(run));
    putc_(w, '"');
}

/* ---- the text formats (Prometheus 0.0.4 and OpenMetrics 1.0) ------------- */

static const char *type_word(cairn_metrics_type_t t)
{
    switch (t) {
    case CAIRN_METRICS_COUNTER:
        return "counter";
    case CAIRN_METRICS_HISTOGRAM:
        return "histogram";
    default:
        return "gauge";
    }
}

/* The family name as exposed: OpenMetrics counters drop "_total" from the
 * family name (their sample is always <family>_total). */
static size_t exposed_name_len(const char *name, cairn_metrics_type_t type,
                               int om)
{
    size_t n = strlen(name);
    if (om && type == CAIRN_METRICS_COUNTER && n > 6 &&
        strcmp(name + n - 6, "_total") == 0)
        return n - 6;
    return n;
}

static void text_header(writer_t *w, const char *name, size_t name_len,
                        const char *help, cairn_metrics_type_t type, int om)
{
    if (help[0] != '\0') {
        puts_(w, "# HELP ");
        put(w, name, name_len);
        putc_(w, ' ');
        put_escaped(w, help, om);
        putc_(w, '\n');
    }
    puts_(w, "# TYPE ");
    put(w, name, name_len);
    putc_(w, ' ');
    puts_(w, type_word(type));
    putc_(w, '\n');
}

/* Render `a="x",b="y"` (no braces) for a child into lw's buffer. */
static void render_labels(writer_t *lw, const struct cairn_metrics_family *f,
                          const cairn__child_t *c)
{
    lw->buf->len = 0;
    for (size_t i = 0; i < f->label_count; i++) {
        if (i > 0)
            putc_(lw, ',');
        puts_(lw, f->label_names[i]);
        puts_(lw, "=\"");
        put_escaped(lw, c->label_values[i], 1);
        putc_(lw, '"');
    }
}

/* name + suffix + {labels[,le="..."]} + ' ' (the value follows). */
static void sample_start(writer_t *w, const char *name, size_t name_len,
                         const char *suffix, const cairn_metrics_buf_t *labels,
                         const char *le)
{
    put(w, name, name_len);
    puts_(w, suffix);
    if (labels->len > 0 || le != NULL) {
        putc_(w, '{');
        put(w, labels->data, labels->len);
        if (le != NULL) {
            if (labels->len > 0)
                putc_(w, ',');
            puts_(w, "le=\"");
            puts_(w, le);
            putc_(w, '"');
        }
        putc_(w, '}');
    }
    putc_(w, ' ');
}

static void text_family(writer_t *w, writer_t *lw,
                        const struct cairn_metrics_family *f, int om)
{
    size_t name_len = exposed_name_len(f->name, f->type, om);
    text_header(w, f->name, name_len, f->help, f->type, om);
    /* OpenMetrics counters are <family>_total; Prometheus text uses the
     * registered name unchanged. */
    const char *ctr_suffix = om ? "_total" : "";

    char les[CAIRN_METRICS_BUCKETS_MAX][40];
    if (f->type == CAIRN_METRICS_HISTOGRAM)
        for (size_t b = 0; b < f->bucket_count; b++)
            fmt_double(les[b], f->bounds[b], om);

    for (size_t i = 0; i < f->child_count && w->err == 0; i++) {
        cairn__child_t *c = f->children[i];
        render_labels(lw, f, c);
        if (lw->err != 0) {
            w->err = lw->err;
            return;
        }
        switch (f->type) {
        case CAIRN_METRICS_COUNTER:
            sample_start(w, f->name, name_len, ctr_suffix, lw->buf, NULL);
            put_u64(w, cairn__metrics_counter_read(c));
            break;
        case CAIRN_METRICS_GAUGE:
            sample_start(w, f->name, name_len, "", lw->buf, NULL);
            put_i64(w, cairn__metrics_gauge_read(c));
            break;
        case CAIRN_METRICS_GAUGE_F64:
            sample_start(w, f->name, name_len, "", lw->buf, NULL);
            put_double(w, cairn__metrics_gauge_f64_read(c), 0);
            break;
        case CAIRN_METRICS_HISTOGRAM: {
            cairn_metrics_histogram_snapshot_t snap;
            cairn__metrics_histogram_read(c, &snap);
            uint64_t cumulative = 0;
            for (size_t b = 0; b <= f->bucket_count; b++) {
                cumulative += snap.counts[b];
                sample_start(w, f->name, name_len, "_bucket", lw->buf,
                             b < f->bucket_count ? les[b] : "+Inf");
                put_u64(w, cumulative);
                putc_(w, '\n');
            }
            sample_start(w, f->name, name_len, "_sum", lw->buf, NULL);
            put_double(w, snap.sum, 0);
            putc_(w, '\n');
            sample_start(w, f->name, name_len, "_count", lw->buf, NULL);
            put_u64(w, snap.count);
            break;
        }
        }
        putc_(w, '\n');
    }
}

/* ---- built-in series ------------------------------------------------------ */

typedef struct builtin {
    const char *name;
    const char *help;
    cairn_metrics_type_t type;
    int is_double;
    uint64_t u;
    double d;
} builtin_t;

enum { BUILTIN_COUNT = 6 };

static void builtins(struct cairn_metrics *reg, builtin_t out[BUILTIN_COUNT])
{
    cairn_metrics_read_stats_t st;
    cairn_metrics_read_stats(reg, &st);
    const builtin_t b[BUILTIN_COUNT] = {
        {"cairn_uptime_seconds", "Seconds since the metrics registry started.",
         CAIRN_METRICS_GAUGE, 1, 0, cairn_metrics_uptime_seconds(reg)},
        {"cairn_metrics_reads_total", "Histogram snapshot reads.",
         CAIRN_METRICS_COUNTER, 0, st.reads, 0},
        {"cairn_metrics_reads_fast_path_total",
         "Histogram snapshot reads that needed no retry.",
         CAIRN_METRICS_COUNTER, 0, st.fast_path_reads, 0},
        {"cairn_metrics_read_retries_total",
         "Seqlock read attempts repeated because a writer was inside.",
         CAIRN_METRICS_COUNTER, 0, st.retries, 0},
        {"cairn_metrics_reads_timed_total",
         "Histogram snapshot reads whose duration was measured (a sample).",
         CAIRN_METRICS_COUNTER, 0, st.timed_reads, 0},
        {"cairn_metrics_read_timed_seconds_total",
         "Total duration of the timed histogram snapshot reads.",
         CAIRN_METRICS_COUNTER, 1, 0, (double)st.timed_read_ns / 1e9},
    };
    memcpy(out, b, sizeof(b));
}

static void text_builtins(writer_t *w, struct cairn_metrics *reg, int om)
{
    builtin_t b[BUILTIN_COUNT];
    builtins(reg, b);
    for (size_t i = 0; i < BUILTIN_COUNT; i++) {
        size_t name_len = exposed_name_len(b[i].name, b[i].type, om);
        text_header(w, b[i].name, name_len, b[i].help, b[i].type, om);
        put(w, b[i].name, name_len);
        if (om && b[i].type == CAIRN_METRICS_COUNTER)
            puts_(w, "_total");
        putc_(w, ' ');
        if (b[i].is_double)
            put_double(w, b[i].d, 0);
        else
            put_u64(w, b[i].u);
        putc_(w, '\n');
    }
}

/* ---- JSON --------------------------------------------------------------------- */

static void json_family(writer_t *w, const struct cairn_metrics_family *f)
{
    puts_(w, "{\"name\":");
    put_json_string(w, f->name);
    puts_(w, ",\"type\":\"");
    puts_(w, type_word(f->type));
    puts_(w, "\",\"help\":");
    put_json_string(w, f->help);
    puts_(w, ",\"series\":[");
    for (size_t i = 0; i < f->child_count && w->err == 0; i++) {
        cairn__child_t *c = f->children[i];
        if (i > 0)
            putc_(w, ',');
        puts_(w, "{\"labels\":{");
        for (size_t l = 0; l < f->label_count; l++) {
            if (l > 0)
                putc_(w, ',');
            put_json_string(w, f->label_names[l]);
            putc_(w, ':');
            put_json_string(w, c->label_values[l]);
        }
        putc_(w, '}');
        switch (f->type) {
        case CAIRN_METRICS_COUNTER:
            puts_(w, ",\"value\":");
            put_u64(w, cairn__metrics_counter_read(c));
            break;
        case CAIRN_METRICS_GAUGE:
            puts_(w, ",\"value\":");
            put_i64(w, cairn__metrics_gauge_read(c));
            break;
        case CAIRN_METRICS_GAUGE_F64:
            puts_(w, ",\"value\":");
            put_json_double(w, cairn__metrics_gauge_f64_read(c));
            break;
        case CAIRN_METRICS_HISTOGRAM: {
            cairn_metrics_histogram_snapshot_t snap;
            cairn__metrics_histogram_read(c, &snap);
            puts_(w, ",\"buckets\":[");
            uint64_t cumulative = 0;
            for (size_t b = 0; b <= f->bucket_count; b++) {
                cumulative += snap.counts[b];
                if (b > 0)
                    putc_(w, ',');
                puts_(w, "{\"le\":");
                if (b < f->bucket_count)
                    put_json_double(w, f->bounds[b]);
                else
                    puts_(w, "\"+Inf\"");
                puts_(w, ",\"count\":");
                put_u64(w, cumulative);
                putc_(w, '}');
            }
            puts_(w, "],\"sum\":");
            put_json_double(w, snap.sum);
            puts_(w, ",\"count\":");
            put_u64(w, snap.count);
            break;
        }
        }
        putc_(w, '}');
    }
    puts_(w, "]}");
}

static void json_builtins(writer_t *w, struct cairn_metrics *reg, int first)
{
    builtin_t b[BUILTIN_COUNT];
    builtins(reg, b);
    for (size_t i = 0; i < BUILTIN_COUNT; i++) {
        if (!first || i > 0)
            putc_(w, ',');
        puts_(w, "{\"name\":");
        put_json_string(w, b[i].name);
        puts_(w, ",\"type\":\"");
        puts_(w, type_word(b[i].type));
        puts_(w, "\",\"help\":");
        put_json_string(w, b[i].help);
        puts_(w, ",\"series\":[{\"labels\":{},\"value\":");
        if (b[i].is_double)
            put_json_double(w, b[i].d);
        else
            put_u64(w, b[i].u);
        puts_(w, "}]}");
    }
}

/* ---- entry point ---------------------------------------------------------------- */

CAIRN_EXPORT int cairn_metrics_export(cairn_metrics_t *reg,
                                      cairn_metrics_format_t format,
                                      cairn_metrics_buf_t *buf)
{
    if (format != CAIRN_METRICS_PROMETHEUS &&
        format != CAIRN_METRICS_OPENMETRICS && format != CAIRN_METRICS_JSON)
        return CAIRN_EBAD_OPTION;
    size_t start = buf->len;
    writer_t w = {buf, 0};
    cairn_metrics_buf_t label_buf = {0};
    writer_t lw = {&label_buf, 0};
    int om = format == CAIRN_METRICS_OPENMETRICS;
    /* Allocate up front so even an empty export leaves a NUL-terminated
     * string in buf->data. */
    reserve(&w, 0);

    pthread_mutex_lock(&reg->mu);
    if (format == CAIRN_METRICS_JSON) {
        puts_(&w, "{\"metrics\":[");
        int first = 1;
        for (size_t i = 0; i < reg->family_count && w.err == 0; i++) {
            const struct cairn_metrics_family *f = reg->families[i];
            if (f->child_count == 0)
                continue;
            if (!first)
                putc_(&w, ',');
            first = 0;
            json_family(&w, f);
        }
        if (!reg->no_builtin)
            json_builtins(&w, reg, first);
        puts_(&w, "]}\n");
    } else {
        for (size_t i = 0; i < reg->family_count && w.err == 0; i++) {
            const struct cairn_metrics_family *f = reg->families[i];
            if (f->child_count > 0)
                text_family(&w, &lw, f, om);
        }
        if (!reg->no_builtin)
            text_builtins(&w, reg, om);
        if (om)
            puts_(&w, "# EOF\n");
    }
    pthread_mutex_unlock(&reg->mu);
    cairn_metrics_buf_free(&label_buf);

    if (w.err != 0) {
        buf->len = start;
        if (buf->data != NULL && buf->cap > start)
            buf->data[start] = '\0';
        return w.err;
    }
    if (buf->data != NULL)
        buf->data[buf->len] = '\0';
    return 0;
}

/* ---- content negotiation ------------------------------------------------------ */

#define CT_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"
#define CT_OPENMETRICS                                                         \
    "application/openmetrics-text; version=1.0.0; charset=utf-8"
#define CT_JSON "application/json"

CAIRN_EXPORT const char *
cairn_metrics_content_type(cairn_metrics_format_t format)
{
    switch (format) {
    case CAIRN_METRICS_PROMETHEUS:
        return CT_PROMETHEUS;
    case CAIRN_METRICS_OPENMETRICS:
        return CT_OPENMETRICS;
    case CAIRN_METRICS_JSON:
        return CT_JSON;
    }
    return NULL;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

static const char *trim_end(const char *start, const char *end)
{
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return end;
}

static int token_is(const char *s, const char *e, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(e - s) == n && strncasecmp(s, word, n) == 0;
}

/*
 * Weigh one media range [s, e): returns the format it asks for (0 if none
 * we serve) and its q value in *q.
 */
static int weigh_range(const char *s, const char *e, double *q)
{
    const char *semi = memchr(s, ';', (size_t)(e - s));
    const char *type_end = trim_end(s, semi ? semi : e);
    const char *version = NULL, *version_end = NULL;
    *q = 1.0;
    for (const char *p = semi; p != NULL && p < e;) {
        const char *ps = skip_ws(p + 1, e);
        const char *pe = memchr(ps, ';', (size_t)(e - ps));
        const char *next = pe;
        if (pe == NULL)
            pe = e;
        const char *eq = memchr(ps, '=', (size_t)(pe - ps));
        if (eq != NULL) {
            const char *ks = ps, *ke = trim_end(ps, eq);
            const char *vs = skip_ws(eq + 1, pe), *ve = trim_end(vs, pe);
            if (ve - vs >= 2 && *vs == '"' && ve[-1] == '"') {
                vs++;
                ve--;
            }
            if (token_is(ks, ke, "q")) {
                char tmp[16];
                size_t n = (size_t)(ve - vs);
                if (n >= sizeof(tmp))
                    n = sizeof(tmp) - 1;
                memcpy(tmp, vs, n);
                tmp[n] = '\0';
                char *endp;
                double v = strtod(tmp, &endp);
                *q = (endp == tmp || !(v >= 0.0)) ? 0.0 : (v > 1.0 ? 1.0 : v);
            } else if (token_is(ks, ke, "version")) {
                version = vs;
                version_end = ve;
            }
        }
        p = next;
    }
    if (token_is(s, type_end, "application/openmetrics-text")) {
        if (version == NULL || token_is(version, version_end, "1.0.0") ||
            token_is(version, version_end, "0.0.1"))
            return CAIRN_METRICS_OPENMETRICS;
        return 0;
    }
    if (token_is(s, type_end, "text/plain")) {
        if (version == NULL || token_is(version, version_end, "0.0.4"))
            return CAIRN_METRICS_PROMETHEUS;
        return 0;
    }
    if (token_is(s, type_end, "application/json"))
        return CAIRN_METRICS_JSON;
    if (token_is(s, type_end, "text/*") || token_is(s, type_end, "*/*"))
        return CAIRN_METRICS_PROMETHEUS;
    return 0;
}

CAIRN_EXPORT cairn_metrics_format_t
cairn_metrics_format_from_accept(const char *accept, const char **content_type)
{
    cairn_metrics_format_t best = CAIRN_METRICS_PROMETHEUS;
    double best_q = 0.0;
    if (accept != NULL) {
        const char *p = accept, *end = accept + strlen(accept);
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *re = comma ? comma : end;
            const char *rs = skip_ws(p, re);
            double q;
            int fmt = rs < re ? weigh_range(rs, re, &q) : 0;
            /* Strictly greater: on equal q the range listed first wins. */
            if (fmt != 0 && q > best_q) {
                best = (cairn_metrics_format_t)fmt;
                best_q = q;
            }
            p = re + 1;
        }
    }
    if (content_type != NULL)
        *content_type = cairn_metrics_content_type(best);
    return best;
}
