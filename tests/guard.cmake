# Payload guard tests (src/guard): tests/unit/test_guard.c and
# tests/unit/test_guard_alloc.c.  The reload test runs reader threads, so it
# also carries the concurrency label (the TSan build runs it).
cairn_test(unit/test_guard.c LABELS unit TIMEOUT 300 TESTS
  sniff_magic_bytes
  encoding_parse_declared
  unsupported_encodings_refused
  unsupported_encodings_passthrough
  brotli_declared_refused
  gzip_roundtrip
  zlib_roundtrip
  deflate_declared_raw_and_zlib
  zstd_roundtrip
  gzip_multimember
  gzip_zeros_1gib_ratio
  gzip_zeros_1gib_size
  gzip_bomb_peak_rss
  zstd_zeros_ratio
  ratio_arithmetic_exact
  gzip_inside_gzip
  nested_layers_share_budget
  zstd_huge_window
  zstd_huge_content_size
  truncated_streams
  corrupt_streams
  declared_encoding_mismatch
  trailing_garbage
  input_too_large
  empty_payload
  opts_out_of_range
  json_valid_documents
  json_syntax_errors
  json_string_scan_word_boundaries
  json_nested_100000_deep
  json_depth_limit_exact
  json_string_limit
  json_members_limit
  json_duplicate_keys
  json_duplicate_keys_large_object
  json_key_table_reset_after_failure
  json_surrogate_escapes
  utf8_every_class
  utf8_exhaustive_against_reference
  utf8_in_json_and_text
  patterns_default_hit_and_near_miss
  patterns_default_all_tested
  patterns_builtin_matches_file
  patterns_file_errors
  patterns_compile_error_names_id
  patterns_type_filter
  patterns_flag_only
  patterns_json_escapes_decoded
  http_status_mapping
  result_format_messages)
cairn_test(unit/test_guard.c LABELS unit concurrency TIMEOUT 300 TESTS
  patterns_reload_concurrent)
cairn_test(unit/test_guard_alloc.c LABELS unit TESTS
  common_case_allocation_free)
