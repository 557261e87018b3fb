# Stress validators: run in every build; the TSan build runs the
# "concurrency" label.
cairn_test(stress/stress_log.c LABELS stress concurrency
           TESTS stress_lockfree stress_mutex TIMEOUT 600)
# kill -9 at random points, hundreds of times (bounded in time), then
# recovery and cairn_log_verify.  Forks, so not run under TSan.
cairn_test(stress/crash_log.c LABELS stress TESTS kill9_many_times TIMEOUT 400)
