# The stream guard's conformance suite: every twin case runs against both
# implementations (<case>_lockfree and <case>_mutex).
set(TABLE_TWIN_CASES record_accepts_and_counts reserved_streams_refused
    breaker_opens_on_failures_within_window breaker_half_opens_after_recovery
    breaker_closes_after_probe_successes breaker_probe_failure_reopens
    breaker_half_open_without_outcomes_reopens stale_outcomes_ignored
    breaker_off_never_opens admin_sets_breaker gcra_boundary_exact
    gcra_uneven_rate_in_integer_ns throttle_audit_coalesced
    audit_is_rate_limited eviction_rederives_from_log
    eviction_spares_guarded_streams eviction_off_when_zero
    eviction_churn_keeps_chains_short million_streams_keep_lookups_flat
    colliding_names_do_not_slow_lookups)
set(TABLE_CASES "")
foreach(c ${TABLE_TWIN_CASES})
  list(APPEND TABLE_CASES ${c}_lockfree ${c}_mutex)
endforeach()
cairn_test(unit/test_table.c LABELS unit TESTS ${TABLE_CASES} TIMEOUT 120)
# A reader thread holds a slot while it is evicted: runs under TSan too.
cairn_test(unit/test_table.c LABELS unit concurrency
           TESTS eviction_waits_for_readers_lockfree
                 eviction_waits_for_readers_mutex TIMEOUT 120)
# Stress validators: many threads recording outcomes on few streams, and
# appends racing evictions (TSan runs the "concurrency" label).
cairn_test(stress/stress_table.c LABELS stress concurrency
           TESTS breaker_stress_lockfree breaker_stress_mutex
                 eviction_stress_lockfree eviction_stress_mutex TIMEOUT 300)
