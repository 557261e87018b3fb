/*
 * metrics.h — counters, gauges and histograms with label sets, read
 * without locks, exported as Prometheus text 0.0.4, OpenMetrics 1.0 or JSON.
 *
 * Model.  A registry (cairn_metrics_t) holds families.  A family has a
 * name, a help text, a type and a fixed list of label names (possibly
 * none); each distinct list of label values is one child, the thing a hot
 * path updates.  Look a child up once (at start-up, or when a new label
 * value first appears) and keep the pointer: updating it takes no lock, no
 * allocation, no lookup and no formatting.
 *
 *     cairn_metrics_t *reg;
 *     cairn_metrics_create(NULL, &reg);
 *     static const char *const by[] = {"result"};
 *     cairn_metrics_desc_t d = { .type = CAIRN_METRICS_COUNTER,
 *         .name = "cairn_appends_total", .help = "Appends by result.",
 *         .label_names = by, .label_count = 1 };
 *     cairn_metrics_family_t *fam;
 *     cairn_metrics_register(reg, &d, &fam);
 *     const char *const ok[] = {"ok"};
 *     cairn_metrics_counter_t *appends_ok;
 *     cairn_metrics_counter_child(fam, ok, &appends_ok);
 *     ...
 *     cairn_metrics_counter_inc(appends_ok);          // hot path
 *
 * Providers.  CAIRN_METRICS_SEQLOCK (enhanced): counters and histograms are
 * sharded per thread (a thread keeps the shard it is first given), each
 * histogram shard a seqlock, so concurrent writers rarely share a cache
 * line and readers never lock.  CAIRN_METRICS_STANDARD: every child has a
 * pthread rwlock; writers take it exclusively and readers shared.  Both
 * behave identically (the same conformance tests run against both).
 *
 * Lifetimes.  Families and children live until cairn_metrics_destroy();
 * their pointers stay valid and usable from any thread until then.
 * Strings passed in are copied.  Every function taking a registry, family
 * or child is thread-safe unless its comment says otherwise.
 */
#ifndef CAIRN_METRICS_H
#define CAIRN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "cairn.h"
#include "limits.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_metrics cairn_metrics_t;
typedef struct cairn_metrics_family cairn_metrics_family_t;
typedef struct cairn_metrics_counter cairn_metrics_counter_t;
typedef struct cairn_metrics_gauge cairn_metrics_gauge_t;
typedef struct cairn_metrics_gauge_f64 cairn_metrics_gauge_f64_t;
typedef struct cairn_metrics_histogram cairn_metrics_histogram_t;

typedef enum cairn_metrics_provider {
    /* enhanced_mode decides: seqlock when non-zero, standard otherwise. */
    CAIRN_METRICS_PROVIDER_DEFAULT = 0,
    CAIRN_METRICS_SEQLOCK = 1,
    CAIRN_METRICS_STANDARD = 2
} cairn_metrics_provider_t;

typedef enum cairn_metrics_type {
    CAIRN_METRICS_COUNTER = 1,   /* u64, only goes up */
    CAIRN_METRICS_GAUGE = 2,     /* i64, set / add */
    CAIRN_METRICS_GAUGE_F64 = 3, /* double, set / add (exported as gauge) */
    CAIRN_METRICS_HISTOGRAM = 4  /* fixed buckets + sum + count */
} cairn_metrics_type_t;

typedef enum cairn_metrics_format {
    CAIRN_METRICS_PROMETHEUS = 1,  /* text/plain; version=0.0.4 */
    CAIRN_METRICS_OPENMETRICS = 2, /* application/openmetrics-text 1.0.0 */
    CAIRN_METRICS_JSON = 3         /* application/json */
} cairn_metrics_format_t;

/* Options for cairn_metrics_create(); zero-initialise, then set fields. */
typedef struct cairn_metrics_opts {
    /* [metrics] provider; DEFAULT follows enhanced_mode. */
    cairn_metrics_provider_t provider;
    /* [event_processor] enhanced_mode, consulted when provider is DEFAULT. */
    int enhanced_mode;
    /* Most children (series) over all families; 0 = default
     * CAIRN_METRICS_MAX_SERIES_DEFAULT, at most CAIRN_METRICS_MAX_SERIES_CAP. */
    uint32_t max_series;
    /* Write shards per counter and histogram (seqlock provider); 0 = the
     * online CPUs.  Rounded up to a power of two; at most
     * CAIRN_METRICS_SHARDS_CAP. */
    uint32_t shards;
    /* Non-zero: do not export the built-in series (uptime, read
     * statistics).  Used for byte-exact golden output. */
    int no_builtin;
} cairn_metrics_opts_t;

/*
 * Parse a [metrics] provider value: "seqlock", "standard" or "default".
 * Returns 0, or CAIRN_ECONFIG_VALUE for anything else (*out untouched).
 */
CAIRN_EXPORT int cairn_metrics_provider_parse(const char *value,
                                              cairn_metrics_provider_t *out);

/* "seqlock" or "standard" (static storage). */
CAIRN_EXPORT const char *
cairn_metrics_provider_name(cairn_metrics_provider_t provider);

/*
 * Create a registry.  opts may be NULL (all defaults; provider DEFAULT with
 * enhanced_mode 0 means standard, so pass opts to get seqlock).  On
 * success *out owns the registry; free it with cairn_metrics_destroy().
 * Returns 0, CAIRN_EBAD_OPTION (max_series or shards above their caps,
 * unknown provider), -ENOMEM.
 */
CAIRN_EXPORT int cairn_metrics_create(const cairn_metrics_opts_t *opts,
                                      cairn_metrics_t **out);

/* Free the registry with every family and child.  NULL is a no-op.  No
 * other thread may use the registry or any of its children meanwhile or
 * afterwards. */
CAIRN_EXPORT void cairn_metrics_destroy(cairn_metrics_t *reg);

/* The provider the registry resolved to (SEQLOCK or STANDARD). */
CAIRN_EXPORT cairn_metrics_provider_t
cairn_metrics_provider(const cairn_metrics_t *reg);

/* Seconds since cairn_metrics_create() (monotonic clock). */
CAIRN_EXPORT double cairn_metrics_uptime_seconds(const cairn_metrics_t *reg);

/* ---- registration (cold path) ------------------------------------------ */

/* A family description for cairn_metrics_register(); all pointers are
 * borrowed for the call only (everything is copied). */
typedef struct cairn_metrics_desc {
    cairn_metrics_type_t type;
    /* [a-zA-Z_:][a-zA-Z0-9_:]*, at most CAIRN_METRICS_NAME_MAX bytes. */
    const char *name;
    /* Free text, valid UTF-8, at most CAIRN_METRICS_HELP_MAX bytes; NULL
     * means "". */
    const char *help;
    /* Label names: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__", unique,
     * "le" not allowed on histograms; at most CAIRN_METRICS_LABELS_MAX. */
    const char *const *label_names;
    size_t label_count;
    /* Histograms only: upper bounds, strictly increasing and finite, 1 to
     * CAIRN_METRICS_BUCKETS_MAX of them (+Inf is implicit). */
    const double *buckets;
    size_t bucket_count;
} cairn_metrics_desc_t;

/*
 * Get or create the family desc describes.  Idempotent: registering the
 * same description again returns the existing family.  *out (optional,
 * may be NULL) is owned by the registry.
 * Returns 0 or:
 *   CAIRN_EMETRIC_NAME              bad metric name
 *   CAIRN_EMETRIC_LABEL_NAME        bad, reserved or duplicate label name
 *   CAIRN_EMETRIC_TOO_MANY_LABELS   label_count > CAIRN_METRICS_LABELS_MAX
 *   CAIRN_EMETRIC_BUCKETS           bad bucket list (or buckets on a
 *                                   non-histogram)
 *   CAIRN_EMETRIC_LABEL_VALUE       help not UTF-8 or too long
 *   CAIRN_EMETRIC_TYPE_MISMATCH     name exists with another type
 *   CAIRN_EMETRIC_HELP_MISMATCH     name exists with another help text
 *   CAIRN_EMETRIC_LABELS_MISMATCH   name exists with other label names or
 *                                   other buckets
 *   CAIRN_EBAD_OPTION               desc or name NULL, unknown type
 *   -ENOMEM
 */
CAIRN_EXPORT int cairn_metrics_register(cairn_metrics_t *reg,
                                        const cairn_metrics_desc_t *desc,
                                        cairn_metrics_family_t **out);

/*
 * Get or create the child of fam with these label values (label_count
 * strings in the family's label-name order; may be NULL when the family
 * has no labels).  Values are copied; any valid UTF-8 up to
 * CAIRN_METRICS_LABEL_VALUE_MAX bytes.  The same values always give the
 * same child.  *out is owned by the registry.
 * Returns 0 or CAIRN_EMETRIC_TYPE_MISMATCH (the family has another type),
 * CAIRN_EMETRIC_LABEL_VALUE, CAIRN_EMETRIC_FULL (max_series reached),
 * CAIRN_EBAD_OPTION (NULL value), -ENOMEM.
 */
CAIRN_EXPORT int cairn_metrics_counter_child(cairn_metrics_family_t *fam,
                                             const char *const *label_values,
                                             cairn_metrics_counter_t **out);
CAIRN_EXPORT int cairn_metrics_gauge_child(cairn_metrics_family_t *fam,
                                           const char *const *label_values,
                                           cairn_metrics_gauge_t **out);
CAIRN_EXPORT int
cairn_metrics_gauge_f64_child(cairn_metrics_family_t *fam,
                              const char *const *label_values,
                              cairn_metrics_gauge_f64_t **out);
CAIRN_EXPORT int
cairn_metrics_histogram_child(cairn_metrics_family_t *fam,
                              const char *const *label_values,
                              cairn_metrics_histogram_t **out);

/*
 * Shorthands for a family without labels: register it (same errors as
 * cairn_metrics_register) and return its only child.
 */
CAIRN_EXPORT int cairn_metrics_counter(cairn_metrics_t *reg, const char *name,
                                       const char *help,
                                       cairn_metrics_counter_t **out);
CAIRN_EXPORT int cairn_metrics_gauge(cairn_metrics_t *reg, const char *name,
                                     const char *help,
                                     cairn_metrics_gauge_t **out);
CAIRN_EXPORT int cairn_metrics_gauge_f64(cairn_metrics_t *reg,
                                         const char *name, const char *help,
                                         cairn_metrics_gauge_f64_t **out);
CAIRN_EXPORT int cairn_metrics_histogram(cairn_metrics_t *reg,
                                         const char *name, const char *help,
                                         const double *buckets,
                                         size_t bucket_count,
                                         cairn_metrics_histogram_t **out);

/* ---- hot path: no lock (seqlock provider), no allocation, no lookup ---- */

/* Add 1 / n to a counter.  Thread-safe; wraps modulo 2^64. */
CAIRN_EXPORT void cairn_metrics_counter_inc(cairn_metrics_counter_t *c);
CAIRN_EXPORT void cairn_metrics_counter_add(cairn_metrics_counter_t *c,
                                            uint64_t n);
/* The counter's current total.  Thread-safe, lock-free with the seqlock
 * provider; successive reads by one thread never decrease. */
CAIRN_EXPORT uint64_t cairn_metrics_counter_value(cairn_metrics_counter_t *c);

/* Integer gauge: set, add (negative to subtract), inc, dec, read. */
CAIRN_EXPORT void cairn_metrics_gauge_set(cairn_metrics_gauge_t *g,
                                          int64_t v);
CAIRN_EXPORT void cairn_metrics_gauge_add(cairn_metrics_gauge_t *g,
                                          int64_t delta);
CAIRN_EXPORT void cairn_metrics_gauge_inc(cairn_metrics_gauge_t *g);
CAIRN_EXPORT void cairn_metrics_gauge_dec(cairn_metrics_gauge_t *g);
CAIRN_EXPORT int64_t cairn_metrics_gauge_value(cairn_metrics_gauge_t *g);

/* Floating gauge: set, add, read.  NaN and infinities are stored as is. */
CAIRN_EXPORT void cairn_metrics_gauge_f64_set(cairn_metrics_gauge_f64_t *g,
                                              double v);
CAIRN_EXPORT void cairn_metrics_gauge_f64_add(cairn_metrics_gauge_f64_t *g,
                                              double delta);
CAIRN_EXPORT double cairn_metrics_gauge_f64_value(cairn_metrics_gauge_f64_t *g);

/* Record one observation: the first bucket whose bound is >= v (or +Inf;
 * NaN goes to +Inf only), sum += v, count += 1, all as one unit that no
 * reader sees half done.  Thread-safe. */
CAIRN_EXPORT void cairn_metrics_histogram_observe(cairn_metrics_histogram_t *h,
                                                  double v);

/* A consistent histogram reading.  counts[i] is the NON-cumulative count
 * of bucket i (bounds[i]; index bucket_count is +Inf), so
 * count == sum of counts[0..bucket_count].  bounds[] past bucket_count - 1
 * and counts[] past bucket_count are not written. */
typedef struct cairn_metrics_histogram_snapshot {
    size_t bucket_count;                          /* finite bounds */
    double bounds[CAIRN_METRICS_BUCKETS_MAX];     /* copied from the family */
    uint64_t counts[CAIRN_METRICS_BUCKETS_MAX + 1];
    uint64_t count;
    double sum;
} cairn_metrics_histogram_snapshot_t;

/*
 * Read h consistently into *out: buckets, sum and count always agree.
 * Seqlock provider: never locks, retries while a writer is inside a shard
 * (counted in the read statistics).  Standard: takes the read lock.
 */
CAIRN_EXPORT void
cairn_metrics_histogram_snapshot(cairn_metrics_histogram_t *h,
                                 cairn_metrics_histogram_snapshot_t *out);

/* ---- timer: observes elapsed seconds into a histogram exactly once ----- */

/* public: embed on the stack.  Fields are private. */
typedef struct cairn_metrics_timer {
    cairn_metrics_histogram_t *hist; /* private */
    uint64_t start_ns;               /* private: CLOCK_MONOTONIC */
    _Atomic int stopped;             /* private: 0 running, 1 stopped */
} cairn_metrics_timer_t;

/* Start timing into h (NULL h: the timer measures but records nothing). */
CAIRN_EXPORT void cairn_metrics_timer_start(cairn_metrics_timer_t *t,
                                            cairn_metrics_histogram_t *h);

/*
 * Stop the timer.  The first stop (from any thread) records the elapsed
 * seconds into the histogram and returns 1; every later stop records
 * nothing and returns 0.  *seconds (optional) receives the elapsed time
 * measured by this call.  Thread-safe.
 */
CAIRN_EXPORT int cairn_metrics_timer_stop(cairn_metrics_timer_t *t,
                                          double *seconds);

/* Stop without recording (an abandoned operation); later stops record
 * nothing.  Returns 1 if this call stopped it, 0 if it was stopped. */
CAIRN_EXPORT int cairn_metrics_timer_discard(cairn_metrics_timer_t *t);

/* For __attribute__((cleanup)): stops (records once) when the variable
 * goes out of scope, whatever path leaves it. */
CAIRN_EXPORT void cairn_metrics_timer_cleanup(cairn_metrics_timer_t *t);

/* Declare a timer `var` on h that records when the enclosing scope exits
 * unless stopped or discarded earlier (GCC and Clang). */
#define CAIRN_METRICS_TIMER_SCOPED(var, h)                                     \
    cairn_metrics_timer_t var                                                  \
        __attribute__((cleanup(cairn_metrics_timer_cleanup)));                 \
    cairn_metrics_timer_start(&(var), (h))

/* ---- read statistics ------------------------------------------------------ */

typedef struct cairn_metrics_read_stats {
    uint64_t reads;           /* histogram snapshot reads */
    uint64_t fast_path_reads; /* reads that needed no retry */
    uint64_t retries;         /* extra attempts (writer was inside) */
    uint64_t timed_reads;     /* reads whose duration was measured */
    uint64_t timed_read_ns;   /* total duration of those reads */
} cairn_metrics_read_stats_t;

/*
 * Statistics of the registry's histogram snapshot reads (including those
 * made by exporters).  One read in CAIRN_METRICS_READ_TIMING_EVERY per
 * thread is timed, so the clock is not read on every read; the mean read
 * time is timed_read_ns / timed_reads.  Counts are exact.
 */
CAIRN_EXPORT void cairn_metrics_read_stats(const cairn_metrics_t *reg,
                                           cairn_metrics_read_stats_t *out);

/* ---- export --------------------------------------------------------------- */

/*
 * The output buffer of an exporter; the caller owns it.  Zero-initialise
 * (data NULL, cap 0) for a buffer the exporter grows with realloc; free it
 * with cairn_metrics_buf_free().  Or point data/cap at your own memory and
 * set fixed = 1: then nothing is reallocated and an export that does not
 * fit returns CAIRN_EMETRIC_BUFFER.  Exporters append at len and keep a
 * NUL after the last byte (not counted in len).
 */
typedef struct cairn_metrics_buf {
    char *data;
    size_t len;
    size_t cap;
    int fixed;
} cairn_metrics_buf_t;

/* Free a growable buffer's memory and zero it (fixed buffers: only
 * zeroed).  NULL is a no-op. */
CAIRN_EXPORT void cairn_metrics_buf_free(cairn_metrics_buf_t *buf);

/*
 * Append every family of reg (in registration order, children in creation
 * order), then the built-in series, to buf in the given format.
 * Prometheus text 0.0.4 and OpenMetrics 1.0 (ends with "# EOF") follow the
 * exposition rules in docs/METRICS.md; JSON is one object described there.
 * Values are read with the same consistent reads as the snapshot API;
 * holds the registry's structure lock (so registration waits), never a
 * child's.  Returns 0, CAIRN_EBAD_OPTION (unknown format),
 * CAIRN_EMETRIC_BUFFER (fixed buffer too small; buf->len is restored),
 * -ENOMEM (buf->len restored).
 */
CAIRN_EXPORT int cairn_metrics_export(cairn_metrics_t *reg,
                                      cairn_metrics_format_t format,
                                      cairn_metrics_buf_t *buf);

/*
 * Choose the format for an HTTP Accept header value (NULL or "" = no
 * header).  Media ranges are weighed by their q parameter (ties: the first
 * listed wins):
 *   application/openmetrics-text (version absent, 1.0.0 or 0.0.1) → OPENMETRICS
 *   text/plain (version absent or 0.0.4), text/any, any/any   → PROMETHEUS
 *   application/json                                          → JSON
 * When nothing acceptable is listed, PROMETHEUS is chosen (what Prometheus
 * clients conventionally do).  *content_type (optional) receives the
 * Content-Type header value for the chosen format (static storage).
 * Always returns the chosen format.
 */
CAIRN_EXPORT cairn_metrics_format_t
cairn_metrics_format_from_accept(const char *accept, const char **content_type);

/* The Content-Type of a format (static storage; NULL if unknown). */
CAIRN_EXPORT const char *
cairn_metrics_content_type(cairn_metrics_format_t format);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_METRICS_H */
