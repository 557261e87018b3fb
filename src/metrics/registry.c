/*
 * registry.c — the metrics registry: creation, family registration with
 * Prometheus name rules, and get-or-create of children by label values.
 *
 * DESIGN.  Registration is the cold path, so one mutex (reg->mu) guards all
 * structure: the family list, each family's child array and hash index,
 * and the series count.  Exporters hold the same mutex while they walk the
 * structure.  The hot path never touches it: a caller keeps the child
 * pointer it was given, and children are never moved or freed before
 * cairn_metrics_destroy(), so the pointer stays valid without a lock.  A
 * child is fully initialised before it is published to the index under the
 * mutex, and the unlock orders that initialisation before any later lock
 * holder (or a thread the caller hands the pointer to) uses it.
 *
 * Families are found by a linear scan (registries hold tens to hundreds of
 * families, and registration happens once per family); children by an
 * open-addressing hash over their label values, because a family may hold
 * tens of thousands of children and looking each up must stay O(1).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal/utf8.h"
#include "metrics/metrics_internal.h"

uint64_t cairn__metrics_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

CAIRN_EXPORT int cairn_metrics_provider_parse(const char *value,
                                              cairn_metrics_provider_t *out)
{
    if (value == NULL)
        return CAIRN_ECONFIG_VALUE;
    if (strcmp(value, "seqlock") == 0)
        *out = CAIRN_METRICS_SEQLOCK;
    else if (strcmp(value, "standard") == 0)
        *out = CAIRN_METRICS_STANDARD;
    else if (strcmp(value, "default") == 0)
        *out = CAIRN_METRICS_PROVIDER_DEFAULT;
    else
        return CAIRN_ECONFIG_VALUE;
    return 0;
}

CAIRN_EXPORT const char *
cairn_metrics_provider_name(cairn_metrics_provider_t provider)
{
    switch (provider) {
    case CAIRN_METRICS_SEQLOCK:
        return "seqlock";
    case CAIRN_METRICS_STANDARD:
        return "standard";
    default:
        return "default";
    }
}

static uint32_t round_up_pow2(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

CAIRN_EXPORT int cairn_metrics_create(const cairn_metrics_opts_t *opts,
                                      cairn_metrics_t **out)
{
    cairn_metrics_opts_t o = {0};
    if (opts != NULL)
        o = *opts;
    if (o.provider != CAIRN_METRICS_PROVIDER_DEFAULT &&
        o.provider != CAIRN_METRICS_SEQLOCK &&
        o.provider != CAIRN_METRICS_STANDARD)
        return CAIRN_EBAD_OPTION;
    if (o.max_series > CAIRN_METRICS_MAX_SERIES_CAP ||
        o.shards > CAIRN_METRICS_SHARDS_CAP)
        return CAIRN_EBAD_OPTION;

    cairn_metrics_t *reg = calloc(1, sizeof(*reg));
    if (reg == NULL)
        return -ENOMEM;
    if (o.provider == CAIRN_METRICS_PROVIDER_DEFAULT)
        reg->provider =
            o.enhanced_mode ? CAIRN_METRICS_SEQLOCK : CAIRN_METRICS_STANDARD;
    else
        reg->provider = o.provider;
    reg->max_series =
        o.max_series ? o.max_series : CAIRN_METRICS_MAX_SERIES_DEFAULT;
    if (o.shards == 0) {
        /* One shard per CPU: threads take shards round-robin, so on N
         * CPUs N running writers land on N different cache lines. */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        if (cpus < 1)
            cpus = 1;
        if (cpus > (long)CAIRN_METRICS_SHARDS_CAP)
            cpus = CAIRN_METRICS_SHARDS_CAP;
        o.shards = (uint32_t)cpus;
    }
    reg->shards = round_up_pow2(o.shards);
    if (reg->shards > CAIRN_METRICS_SHARDS_CAP)
        reg->shards = CAIRN_METRICS_SHARDS_CAP;
    reg->no_builtin = o.no_builtin;
    reg->start_ns = cairn__metrics_now_ns();

    reg->stats = aligned_alloc(CAIRN__CACHE_LINE,
                               sizeof(*reg->stats) * reg->shards);
    if (reg->stats == NULL) {
        free(reg);
        return -ENOMEM;
    }
    memset(reg->stats, 0, sizeof(*reg->stats) * reg->shards);
    int rc = pthread_mutex_init(&reg->mu, NULL);
    if (rc != 0) {
        free(reg->stats);
        free(reg);
        return -rc;
    }
    *out = reg;
    return 0;
}

static void free_strings(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void family_free(struct cairn_metrics_family *f)
{
    for (size_t i = 0; i < f->child_count; i++) {
        cairn__child_t *c = f->children[i];
        cairn__metrics_child_fini(c);
        free_strings(c->label_values, f->label_count);
        free(c);
    }
    free(f->children);
    free(f->index);
    free_strings(f->label_names, f->label_count);
    free(f->name);
    free(f->help);
    free(f);
}

CAIRN_EXPORT void cairn_metrics_destroy(cairn_metrics_t *reg)
{
    if (reg == NULL)
        return;
    for (size_t i = 0; i < reg->family_count; i++)
        family_free(reg->families[i]);
    free(reg->families);
    pthread_mutex_destroy(&reg->mu);
    free(reg->stats);
    free(reg);
}

CAIRN_EXPORT cairn_metrics_provider_t
cairn_metrics_provider(const cairn_metrics_t *reg)
{
    return reg->provider;
}

CAIRN_EXPORT double cairn_metrics_uptime_seconds(const cairn_metrics_t *reg)
{
    return (double)(cairn__metrics_now_ns() - reg->start_ns) / 1e9;
}

/* ---- validation ----------------------------------------------------------- */

static int is_alpha_(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]* (Prometheus data model). */
static int valid_metric_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CAIRN_METRICS_NAME_MAX)
        return 0;
    if (!is_alpha_(s[0]) && s[0] != ':')
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!is_alpha_(s[i]) && !is_digit(s[i]) && s[i] != ':')
            return 0;
    return 1;
}

/* Label names: [a-zA-Z_][a-zA-Z0-9_]*; "__" prefixes are reserved for
 * Prometheus' internal use. */
static int valid_label_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CAIRN_METRICS_NAME_MAX || !is_alpha_(s[0]))
        return 0;
    if (n >= 2 && s[0] == '_' && s[1] == '_')
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!is_alpha_(s[i]) && !is_digit(s[i]))
            return 0;
    return 1;
}

static int valid_text(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n <= max && cairn__utf8_check(s, n, 0) == 1;
}

static int check_desc(const cairn_metrics_desc_t *d)
{
    if (d == NULL || d->name == NULL)
        return CAIRN_EBAD_OPTION;
    if (d->type < CAIRN_METRICS_COUNTER || d->type > CAIRN_METRICS_HISTOGRAM)
        return CAIRN_EBAD_OPTION;
    if (!valid_metric_name(d->name))
        return CAIRN_EMETRIC_NAME;
    if (d->help != NULL && !valid_text(d->help, CAIRN_METRICS_HELP_MAX))
        return CAIRN_EMETRIC_LABEL_VALUE;
    if (d->label_count > CAIRN_METRICS_LABELS_MAX)
        return CAIRN_EMETRIC_TOO_MANY_LABELS;
    if (d->label_count > 0 && d->label_names == NULL)
        return CAIRN_EBAD_OPTION;
    for (size_t i = 0; i < d->label_count; i++) {
        const char *ln = d->label_names[i];
        if (ln == NULL || !valid_label_name(ln))
            return CAIRN_EMETRIC_LABEL_NAME;
        /* The histogram exporter adds "le" itself. */
        if (d->type == CAIRN_METRICS_HISTOGRAM && strcmp(ln, "le") == 0)
            return CAIRN_EMETRIC_LABEL_NAME;
        for (size_t k = 0; k < i; k++)
            if (strcmp(ln, d->label_names[k]) == 0)
                return CAIRN_EMETRIC_LABEL_NAME;
    }
    if (d->type == CAIRN_METRICS_HISTOGRAM) {
        if (d->bucket_count < 1 || d->bucket_count > CAIRN_METRICS_BUCKETS_MAX ||
            d->buckets == NULL)
            return CAIRN_EMETRIC_BUCKETS;
        for (size_t i = 0; i < d->bucket_count; i++) {
            if (!isfinite(d->buckets[i]))
                return CAIRN_EMETRIC_BUCKETS;
            if (i > 0 && !(d->buckets[i] > d->buckets[i - 1]))
                return CAIRN_EMETRIC_BUCKETS;
        }
    } else if (d->bucket_count != 0) {
        return CAIRN_EMETRIC_BUCKETS;
    }
    return 0;
}

/* Compare a registration with an existing family of the same name. */
static int same_family(const struct cairn_metrics_family *f,
                       const cairn_metrics_desc_t *d)
{
    if (f->type != d->type)
        return CAIRN_EMETRIC_TYPE_MISMATCH;
    if (strcmp(f->help, d->help ? d->help : "") != 0)
        return CAIRN_EMETRIC_HELP_MISMATCH;
    if (f->label_count != d->label_count)
        return CAIRN_EMETRIC_LABELS_MISMATCH;
    for (size_t i = 0; i < f->label_count; i++)
        if (strcmp(f->label_names[i], d->label_names[i]) != 0)
            return CAIRN_EMETRIC_LABELS_MISMATCH;
    if (f->type == CAIRN_METRICS_HISTOGRAM) {
        if (f->bucket_count != d->bucket_count)
            return CAIRN_EMETRIC_LABELS_MISMATCH;
        for (size_t i = 0; i < f->bucket_count; i++)
            if (f->bounds[i] != d->buckets[i])
                return CAIRN_EMETRIC_LABELS_MISMATCH;
    }
    return 0;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

static char **dup_strings(const char *const *v, size_t n)
{
    if (n == 0)
        return NULL;
    char **out = calloc(n, sizeof(*out));
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        out[i] = dup_str(v[i]);
        if (out[i] == NULL) {
            free_strings(out, n);
            return NULL;
        }
    }
    return out;
}

/* Names that the built-in series export; a user family may not take them. */
static int builtin_name(const char *name)
{
    static const char *const names[] = {
        "cairn_uptime_seconds",
        "cairn_metrics_reads_total",
        "cairn_metrics_reads_fast_path_total",
        "cairn_metrics_read_retries_total",
        "cairn_metrics_reads_timed_total",
        "cairn_metrics_read_timed_seconds_total",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return 1;
    return 0;
}

CAIRN_EXPORT int cairn_metrics_register(cairn_metrics_t *reg,
                                        const cairn_metrics_desc_t *desc,
                                        cairn_metrics_family_t **out)
{
    int rc = check_desc(desc);
    if (rc != 0)
        return rc;
    if (!reg->no_builtin && builtin_name(desc->name))
        return CAIRN_EMETRIC_TYPE_MISMATCH;

    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->family_count; i++) {
        struct cairn_metrics_family *f = reg->families[i];
        if (strcmp(f->name, desc->name) == 0) {
            rc = same_family(f, desc);
            pthread_mutex_unlock(&reg->mu);
            if (rc == 0 && out != NULL)
                *out = f;
            return rc;
        }
    }

    rc = -ENOMEM;
    struct cairn_metrics_family *f = calloc(1, sizeof(*f));
    if (f == NULL)
        goto unlock;
    f->reg = reg;
    f->type = desc->type;
    f->label_count = desc->label_count;
    f->name = dup_str(desc->name);
    f->help = dup_str(desc->help ? desc->help : "");
    f->label_names = dup_strings(desc->label_names, desc->label_count);
    if (f->name == NULL || f->help == NULL ||
        (desc->label_count > 0 && f->label_names == NULL))
        goto fail;
    if (desc->type == CAIRN_METRICS_HISTOGRAM) {
        f->bucket_count = desc->bucket_count;
        memcpy(f->bounds, desc->buckets,
               desc->bucket_count * sizeof(desc->buckets[0]));
    }
    if (reg->family_count == reg->family_cap) {
        size_t cap = reg->family_cap ? reg->family_cap * 2 : 16;
        void *p = realloc(reg->families, cap * sizeof(*reg->families));
        if (p == NULL)
            goto fail;
        reg->families = p;
        reg->family_cap = cap;
    }
    reg->families[reg->family_count++] = f;
    if (out != NULL)
        *out = f;
    rc = 0;
    goto unlock;
fail:
    family_free(f);
unlock:
    pthread_mutex_unlock(&reg->mu);
    return rc;
}

/* ---- children ------------------------------------------------------------- */

/* FNV-1a over the label values, each terminated by its NUL. */
static uint32_t hash_values(const char *const *v, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)v[i];
        do {
            h ^= *p;
            h *= 16777619u;
        } while (*p++ != 0);
    }
    return h;
}

static int child_matches(const struct cairn_metrics_family *f,
                         const cairn__child_t *c, const char *const *v,
                         uint32_t hash)
{
    if (c->hash != hash)
        return 0;
    for (size_t i = 0; i < f->label_count; i++)
        if (strcmp(c->label_values[i], v[i]) != 0)
            return 0;
    return 1;
}

/* Rebuild the index at twice the size (load factor stays below 1/2). */
static int index_grow(struct cairn_metrics_family *f)
{
    size_t cap = f->index_cap ? f->index_cap * 2 : 16;
    uint32_t *idx = calloc(cap, sizeof(*idx));
    if (idx == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < f->child_count; i++) {
        size_t slot = f->children[i]->hash & (cap - 1);
        while (idx[slot] != 0)
            slot = (slot + 1) & (cap - 1);
        idx[slot] = (uint32_t)(i + 1);
    }
    free(f->index);
    f->index = idx;
    f->index_cap = cap;
    return 0;
}

static int get_child(cairn_metrics_family_t *f, cairn_metrics_type_t type,
                     const char *const *values, cairn__child_t **out)
{
    if (f == NULL)
        return CAIRN_EBAD_OPTION;
    if (f->type != type)
        return CAIRN_EMETRIC_TYPE_MISMATCH;
    if (f->label_count > 0 && values == NULL)
        return CAIRN_EBAD_OPTION;
    for (size_t i = 0; i < f->label_count; i++) {
        if (values[i] == NULL)
            return CAIRN_EBAD_OPTION;
        if (!valid_text(values[i], CAIRN_METRICS_LABEL_VALUE_MAX))
            return CAIRN_EMETRIC_LABEL_VALUE;
    }
    static const char *const no_values[1] = {""};
    const char *const *v = f->label_count > 0 ? values : no_values;
    uint32_t hash = hash_values(v, f->label_count);
    cairn_metrics_t *reg = f->reg;
    int rc = 0;

    pthread_mutex_lock(&reg->mu);
    size_t slot = 0;
    if (f->index_cap > 0) {
        slot = hash & (f->index_cap - 1);
        while (f->index[slot] != 0) {
            cairn__child_t *c = f->children[f->index[slot] - 1];
            if (child_matches(f, c, v, hash)) {
                *out = c;
                goto unlock;
            }
            slot = (slot + 1) & (f->index_cap - 1);
        }
    }
    if (reg->nseries >= reg->max_series) {
        rc = CAIRN_EMETRIC_FULL;
        goto unlock;
    }
    rc = -ENOMEM;
    if (f->child_count == f->child_cap) {
        size_t cap = f->child_cap ? f->child_cap * 2 : 4;
        void *p = realloc(f->children, cap * sizeof(*f->children));
        if (p == NULL)
            goto unlock;
        f->children = p;
        f->child_cap = cap;
    }
    if ((f->child_count + 1) * 2 > f->index_cap) {
        if (index_grow(f) != 0)
            goto unlock;
    }
    cairn__child_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto unlock;
    c->family = f;
    c->hash = hash;
    if (f->label_count > 0) {
        c->label_values = dup_strings(values, f->label_count);
        if (c->label_values == NULL) {
            free(c);
            goto unlock;
        }
    }
    rc = cairn__metrics_child_init(reg, c, type);
    if (rc != 0) {
        free_strings(c->label_values, f->label_count);
        free(c);
        goto unlock;
    }
    /* The index may have been rebuilt above: probe again for a free slot. */
    slot = hash & (f->index_cap - 1);
    while (f->index[slot] != 0)
        slot = (slot + 1) & (f->index_cap - 1);
    f->children[f->child_count++] = c;
    f->index[slot] = (uint32_t)f->child_count;
    reg->nseries++;
    *out = c;
unlock:
    pthread_mutex_unlock(&reg->mu);
    return rc;
}

CAIRN_EXPORT int cairn_metrics_counter_child(cairn_metrics_family_t *fam,
                                             const char *const *label_values,
                                             cairn_metrics_counter_t **out)
{
    cairn__child_t *c;
    int rc = get_child(fam, CAIRN_METRICS_COUNTER, label_values, &c);
    if (rc == 0)
        *out = (cairn_metrics_counter_t *)c;
    return rc;
}

CAIRN_EXPORT int cairn_metrics_gauge_child(cairn_metrics_family_t *fam,
                                           const char *const *label_values,
                                           cairn_metrics_gauge_t **out)
{
    cairn__child_t *c;
    int rc = get_child(fam, CAIRN_METRICS_GAUGE, label_values, &c);
    if (rc == 0)
        *out = (cairn_metrics_gauge_t *)c;
    return rc;
}

CAIRN_EXPORT int
cairn_metrics_gauge_f64_child(cairn_metrics_family_t *fam,
                              const char *const *label_values,
                              cairn_metrics_gauge_f64_t **out)
{
    cairn__child_t *c;
    int rc = get_child(fam, CAIRN_METRICS_GAUGE_F64, label_values, &c);
    if (rc == 0)
        *out = (cairn_metrics_gauge_f64_t *)c;
    return rc;
}

CAIRN_EXPORT int
cairn_metrics_histogram_child(cairn_metrics_family_t *fam,
                              const char *const *label_values,
                              cairn_metrics_histogram_t **out)
{
    cairn__child_t *c;
    int rc = get_child(fam, CAIRN_METRICS_HISTOGRAM, label_values, &c);
    if (rc == 0)
        *out = (cairn_metrics_histogram_t *)c;
    return rc;
}

static int register_plain(cairn_metrics_t *reg, cairn_metrics_type_t type,
                          const char *name, const char *help,
                          const double *buckets, size_t bucket_count,
                          cairn__child_t **out)
{
    cairn_metrics_desc_t d = {.type = type,
                              .name = name,
                              .help = help,
                              .buckets = buckets,
                              .bucket_count = bucket_count};
    cairn_metrics_family_t *f;
    int rc = cairn_metrics_register(reg, &d, &f);
    if (rc != 0)
        return rc;
    return get_child(f, type, NULL, out);
}

CAIRN_EXPORT int cairn_metrics_counter(cairn_metrics_t *reg, const char *name,
                                       const char *help,
                                       cairn_metrics_counter_t **out)
{
    cairn__child_t *c;
    int rc = register_plain(reg, CAIRN_METRICS_COUNTER, name, help, NULL, 0,
                            &c);
    if (rc == 0)
        *out = (cairn_metrics_counter_t *)c;
    return rc;
}

CAIRN_EXPORT int cairn_metrics_gauge(cairn_metrics_t *reg, const char *name,
                                     const char *help,
                                     cairn_metrics_gauge_t **out)
{
    cairn__child_t *c;
    int rc = register_plain(reg, CAIRN_METRICS_GAUGE, name, help, NULL, 0, &c);
    if (rc == 0)
        *out = (cairn_metrics_gauge_t *)c;
    return rc;
}

CAIRN_EXPORT int cairn_metrics_gauge_f64(cairn_metrics_t *reg,
                                         const char *name, const char *help,
                                         cairn_metrics_gauge_f64_t **out)
{
    cairn__child_t *c;
    int rc = register_plain(reg, CAIRN_METRICS_GAUGE_F64, name, help, NULL, 0,
                            &c);
    if (rc == 0)
        *out = (cairn_metrics_gauge_f64_t *)c;
    return rc;
}

CAIRN_EXPORT int cairn_metrics_histogram(cairn_metrics_t *reg,
                                         const char *name, const char *help,
                                         const double *buckets,
                                         size_t bucket_count,
                                         cairn_metrics_histogram_t **out)
{
    cairn__child_t *c;
    int rc = register_plain(reg, CAIRN_METRICS_HISTOGRAM, name, help, buckets,
                            bucket_count, &c);
    if (rc == 0)
        *out = (cairn_metrics_histogram_t *)c;
    return rc;
}
