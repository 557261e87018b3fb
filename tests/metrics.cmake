# Metrics module tests (src/metrics).  Conformance cases run once per
# provider: <case>_seqlock and <case>_standard assert the same behaviour.
set(CAIRN_METRICS_CONFORMANCE counter_ops gauge_ops histogram_ops
    family_children max_series_full golden_exports export_buffers timer_once
    read_stats_exported)
set(CAIRN_METRICS_UNIT_CASES name_validation mismatch_errors
    provider_selection accept_negotiation double_roundtrip promtool_check
    seqlock_basic_wrap)
set(CAIRN_METRICS_UNIT_CONCURRENT concurrent_updates timer_stop_race)

set(_cases ${CAIRN_METRICS_UNIT_CASES})
foreach(c ${CAIRN_METRICS_CONFORMANCE})
  list(APPEND _cases ${c}_seqlock ${c}_standard)
endforeach()
cairn_test(unit/test_metrics.c LABELS unit TESTS ${_cases} TIMEOUT 120)

set(_cases "")
foreach(c ${CAIRN_METRICS_UNIT_CONCURRENT})
  list(APPEND _cases ${c}_seqlock ${c}_standard)
endforeach()
cairn_test(unit/test_metrics.c LABELS unit concurrency TESTS ${_cases}
           TIMEOUT 120)
target_link_libraries(test_metrics PRIVATE PkgConfig::JANSSON)

# Stress validators: each checks its invariant on every read; run under
# TSan through the concurrency label.
cairn_test(stress/stress_metrics.c LABELS stress concurrency TESTS
           readers64_one_writer_seqlock readers64_one_writer_standard
           write_bursts_seqlock write_bursts_standard
           histogram_sequence_wrap seqlock_wrap_concurrent
           seqlock_multi_writer counter_contention_seqlock
           counter_contention_standard export_while_writing_seqlock
           export_while_writing_standard
           TIMEOUT 120)
