/*
 * bench.h — the harness every benchmark suite reports through.
 *
 * A suite is a function `void cairn_bench_suite_<name>(cairn_bench_t *)`
 * listed in bench/suites.h.  It measures, then calls cairn_bench_report()
 * once per named result.  Every result carries its baseline: another result
 * measured in the same run (a mutex twin, a peer server, a plain loop), so
 * a figure is read as a ratio and machine noise cancels out.
 *
 * Units: "events/s", "records/s", "MB/s" ... (bigger is better) or "ns",
 * "us", "ms", "s" (smaller is better).  ratio is always "times better than
 * the baseline": value/baseline for rates, baseline/value for times.
 */
#ifndef CAIRN_BENCH_H
#define CAIRN_BENCH_H

#include <stdint.h>

typedef struct cairn_bench cairn_bench_t;

/* Non-zero under `cairn bench --quick`: use fewer iterations (the whole
 * quick run must finish within 5 minutes on 2 cores). */
int cairn_bench_quick(const cairn_bench_t *b);

/* Show what is being measured now (one progress line on stderr). */
void cairn_bench_progress(cairn_bench_t *b, const char *what);

/*
 * Record one result.  name: the exact result name from the issues
 * ("log.append.ring.1p").  baseline_name: the result or measurement this is
 * compared with (may be NULL when there is none; then ratio is 0).
 * baseline_value is in the same unit as value.  Strings are copied.
 */
void cairn_bench_report(cairn_bench_t *b, const char *name, const char *unit,
                        double value, const char *baseline_name,
                        double baseline_value);

/* Record that a result could not be measured here, and why (printed in the
 * table and written to the JSON with value null). */
void cairn_bench_skip(cairn_bench_t *b, const char *name, const char *why);

/* Monotonic clock in nanoseconds. */
uint64_t cairn_bench_now_ns(void);

/* Keep the compiler from optimising a computed value away. */
#define CAIRN_BENCH_KEEP(x) __asm__ volatile("" : : "g"(x) : "memory")

#endif
