# The HTTP client commands (src/cli/client.c, compiled into the test since
# it lives in the cairn executable): argument parsing, URL building, and
# append/read/state against a fake HTTP server on a loopback port.
cairn_test(unit/test_client.c LABELS unit
  TESTS escape_encodes_all_but_unreserved read_args_build_urls
        usage_errors_and_help append_201_sends_event_and_prints_reply
        append_sends_method_path_headers_body
        append_409_prints_the_server_error append_503_is_a_failure
        append_ndjson_batch_from_stdin connection_refused_is_a_failure
        state_prints_json_and_404_fails read_pages_until_the_end
        read_follow_resumes_with_last_event_id
  TIMEOUT 60)
target_sources(test_client PRIVATE ${CMAKE_SOURCE_DIR}/src/cli/client.c)
target_link_libraries(test_client PRIVATE PkgConfig::CURL PkgConfig::JANSSON)
