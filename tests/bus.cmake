# The bus and projections (tests/unit/test_bus.c, test_projection.c).
# Cases ending in _mutex run the same assertions against the mutex twin of
# the log.  Multi-threaded cases carry the "concurrency" label (TSan).
set(BUS_CASES handlers_see_every_matching_event_once second_bus_is_refused
    next_times_out_after_timeout)
set(BUS_TWIN_CASES subscribe_live_sees_only_new_events
    subscribe_from_seq_and_from_time filter_by_prefix_and_types
    lagged_subscriber_told_exactly_how_many lagged_behind_retention_durable)
set(BUS_THREADED_CASES shutdown_wakes_blocked_next)
set(BUS_TWIN_THREADED_CASES subscribe_while_appending_no_gap_no_duplicate
    sleeping_subscriber_woken_by_append parked_subscriber_gives_up_its_pin)
foreach(c ${BUS_TWIN_CASES})
  list(APPEND BUS_CASES ${c} ${c}_mutex)
endforeach()
foreach(c ${BUS_TWIN_THREADED_CASES})
  list(APPEND BUS_THREADED_CASES ${c} ${c}_mutex)
endforeach()
cairn_test(unit/test_bus.c LABELS unit TESTS ${BUS_CASES})
cairn_test(unit/test_bus.c LABELS unit concurrency TESTS ${BUS_THREADED_CASES}
           TIMEOUT 300)

set(PROJECTION_CASES miss_then_hit_and_commit_updates
    invalidate_on_commit_drops_entry clock_evicts_at_capacity
    min_seq_reads_your_writes find_by_name
    snapshot_plus_tail_equals_full_replay snapshot_file_corrupt_tail_is_cut
    time_travel_at_seq_and_at_time builtins_counts_last_merge
    builtin_fsm_folds_through_definition
    builtin_fsm_without_definition_reads_table
    merge_state_too_large_is_an_error)
cairn_test(unit/test_projection.c LABELS unit TESTS ${PROJECTION_CASES})
cairn_test(unit/test_projection.c LABELS unit concurrency
           TESTS cache_consistent_with_replay_under_concurrent_appends
           TIMEOUT 300)
