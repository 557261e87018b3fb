# Stress validators: run in every build; the TSan build runs the
# "concurrency" label.
cairn_test(stress/stress_log.c LABELS stress concurrency
           TESTS stress_lockfree stress_mutex TIMEOUT 600)
