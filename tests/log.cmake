# The log's conformance suite: every twin case runs against both
# implementations (<case>_lockfree and <case>_mutex).
set(LOG_TWIN_CASES append_and_read_back time_defaults_to_now
    batch_is_consecutive expected_version_rules version_overflow_refused
    invalid_fields_rejected batch_larger_than_quarter_ring_refused
    idempotent_append read_filters release_then_expired
    full_ring_fails_then_recovers wraps_many_laps seq_crosses_32_bits
    table_full_refuses_new_streams too_many_readers guards_inside_append)
set(LOG_CASES bad_options_refused error_table_is_complete)
foreach(c ${LOG_TWIN_CASES})
  list(APPEND LOG_CASES ${c}_lockfree ${c}_mutex)
endforeach()
cairn_test(unit/test_log.c LABELS unit TESTS ${LOG_CASES})
