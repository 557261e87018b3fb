/* The benchmark suites `cairn bench` runs, in order.  One line per suite:
 * X(name) means bench/bench_<name>.c defines cairn_bench_suite_<name>(). */
#define CAIRN_BENCH_SUITES(X)                                                  \
    X(log)                                                                     \
    X(storage)                                                                 \
    X(metrics)                                                                 \
    X(guard)                                                                   \
    X(fsm)                                                                     \
    X(bus)                                                                     \
    X(table)                                                                   \
    X(http)
