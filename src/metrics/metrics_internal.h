/*
 * metrics_internal.h — the registry's private structures, shared by
 * registry.c (structure), provider.c (hot path and reads) and export.c
 * (exposition).  Not API: only include/cairn/metrics.h is.
 */
#ifndef CAIRN_METRICS_INTERNAL_H
#define CAIRN_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cairn/metrics.h"
#include "cairn/seqlock.h"

#define CAIRN__CACHE_LINE 64

/* One counter shard: its own cache line so shards never false-share. */
typedef struct cairn__counter_shard {
    alignas(CAIRN__CACHE_LINE) _Atomic uint64_t value;
} cairn__counter_shard_t;

/*
 * One histogram shard: a seqlock over the non-cumulative bucket counts
 * (index bucket_count is +Inf), the observation count and the sum (a
 * double's bits).  Written by the threads mapped to this shard through
 * cairn_seqlock_write_begin_mw(), read by anyone.
 */
typedef struct cairn__hist_shard {
    alignas(CAIRN__CACHE_LINE) cairn_seqlock_t lock;
    _Atomic uint64_t count;
    _Atomic uint64_t sum_bits;
    _Atomic uint64_t buckets[CAIRN_METRICS_BUCKETS_MAX + 1];
} cairn__hist_shard_t;

/* The standard provider's histogram data, guarded by the child's rwlock. */
typedef struct cairn__std_hist {
    uint64_t buckets[CAIRN_METRICS_BUCKETS_MAX + 1];
    uint64_t count;
    double sum;
} cairn__std_hist_t;

/* Read-statistics shard (seqlock provider): readers add to the shard of
 * their thread so 64 readers do not fight over one line. */
typedef struct cairn__read_stats_shard {
    alignas(CAIRN__CACHE_LINE) _Atomic uint64_t reads;
    _Atomic uint64_t slow_reads; /* reads that retried at least once */
    _Atomic uint64_t retries;
    _Atomic uint64_t timed_reads;
    _Atomic uint64_t timed_read_ns;
} cairn__read_stats_shard_t;

/*
 * A child.  The four public child types are this struct under different
 * tags (each public struct's only member is a cairn__child), so a counter
 * pointer cannot be passed where a histogram is expected.
 */
typedef struct cairn__child {
    /* Read-only after creation; read by the hot path. */
    struct cairn_metrics_family *family;
    uint32_t shard_mask;     /* shards - 1 */
    uint8_t seqlock;         /* provider: 1 seqlock, 0 standard */
    uint8_t type;            /* cairn_metrics_type_t */
    void *shards;            /* seqlock counter/histogram shards */
    /* Seqlock gauges: the value (i64 or double bits) in one word. */
    _Atomic uint64_t word;
    /* Standard provider: everything below `rw` is guarded by it. */
    pthread_rwlock_t rw;
    uint64_t std_value;      /* counter, gauge (i64) or gauge (double bits) */
    cairn__std_hist_t *std_hist;
    /* Cold: identity.  label_values has family->label_count strings. */
    char **label_values;
    uint32_t hash;
} cairn__child_t;

struct cairn_metrics_counter {
    cairn__child_t c;
};
struct cairn_metrics_gauge {
    cairn__child_t c;
};
struct cairn_metrics_gauge_f64 {
    cairn__child_t c;
};
struct cairn_metrics_histogram {
    cairn__child_t c;
};

struct cairn_metrics_family {
    struct cairn_metrics *reg;
    cairn_metrics_type_t type;
    char *name;
    char *help;
    size_t label_count;
    char **label_names;
    size_t bucket_count;
    double bounds[CAIRN_METRICS_BUCKETS_MAX];
    /* Children in creation order, and an open-addressing index into them
     * (slot = child position + 1, 0 = empty).  Guarded by reg->mu. */
    cairn__child_t **children;
    size_t child_count;
    size_t child_cap;
    uint32_t *index;
    size_t index_cap; /* power of two, or 0 */
};

struct cairn_metrics {
    cairn_metrics_provider_t provider; /* resolved: SEQLOCK or STANDARD */
    uint32_t shards;                   /* power of two */
    uint32_t max_series;
    int no_builtin;
    uint64_t start_ns;
    /* Guards the family list, every family's child list and nseries.
     * Never taken by updates or snapshot reads. */
    pthread_mutex_t mu;
    struct cairn_metrics_family **families;
    size_t family_count;
    size_t family_cap;
    size_t nseries;
    cairn__read_stats_shard_t *stats; /* `shards` entries */
};

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t cairn__metrics_now_ns(void);

/* provider.c: build and free a child's provider state (called with reg->mu
 * held by registry.c).  Returns 0 or -ENOMEM. */
int cairn__metrics_child_init(struct cairn_metrics *reg, cairn__child_t *c,
                              cairn_metrics_type_t type);
void cairn__metrics_child_fini(cairn__child_t *c);

/* provider.c: consistent reads used by the exporters. */
uint64_t cairn__metrics_counter_read(cairn__child_t *c);
int64_t cairn__metrics_gauge_read(cairn__child_t *c);
double cairn__metrics_gauge_f64_read(cairn__child_t *c);
void cairn__metrics_histogram_read(cairn__child_t *c,
                                   cairn_metrics_histogram_snapshot_t *out);

/* Test hook: set the sequence of every shard seqlock of a seqlock-provider
 * histogram (no writer or reader may run).  Returns 0, or
 * CAIRN_EBAD_OPTION for a standard-provider histogram. */
int cairn__metrics_histogram_set_sequence(cairn_metrics_histogram_t *h,
                                          uint64_t seq);

#endif /* CAIRN_METRICS_INTERNAL_H */
