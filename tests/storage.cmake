# The durable log: every twin case runs against both implementations.
set(STORAGE_TWIN_CASES roundtrip_and_reopen segments_roll_and_read_back
    retention_by_bytes compressed_round_trip thousands_of_streams_recovered
    idempotency_survives_restart)
set(STORAGE_CASES torn_tail_every_offset flipped_bit_in_sealed_segment
    flipped_bit_never_served torn_batch_dropped_whole enospc_on_write
    edquot_on_write eio_on_fsync directory_is_locked bad_storage_options)
foreach(c ${STORAGE_TWIN_CASES})
  list(APPEND STORAGE_CASES ${c}_lockfree ${c}_mutex)
endforeach()
cairn_test(unit/test_storage.c LABELS unit TESTS ${STORAGE_CASES} TIMEOUT 300)
cairn_test(unit/test_storage.c LABELS unit concurrency
           TESTS follow_across_segments_and_ring_lockfree
                 follow_across_segments_and_ring_mutex TIMEOUT 300)
