# The real server on a loopback port, driven over HTTP by
# tests/integration/test_server.py (Python standard library only).
find_package(Python3 COMPONENTS Interpreter REQUIRED)
set(SERVER_CASES health_and_ready append_and_read expected_version
    status_codes compressed_bodies_and_bombs auth_roles
    non_loopback_needs_tokens breaker_and_throttle fsm_bound_streams
    sse_catch_up_and_resume racing_no_stream kill9_under_load
    metrics_promtool sigterm_drains_and_syncs cli_against_server
    json_event_reader bench_json_contract server_limits
    sighup_reloads_tokens_and_patterns)
foreach(c ${SERVER_CASES})
  add_test(NAME server.${c}
           COMMAND ${Python3_EXECUTABLE}
                   ${CMAKE_SOURCE_DIR}/tests/integration/test_server.py
                   $<TARGET_FILE:cairn_cli> ${c})
  set_tests_properties(server.${c} PROPERTIES LABELS integration TIMEOUT 180)
endforeach()

# The README's five-minute tour, run as written (uses 127.0.0.1:7070).
add_test(NAME tour.readme
         COMMAND ${Python3_EXECUTABLE}
                 ${CMAKE_SOURCE_DIR}/tests/integration/test_tour.py
                 $<TARGET_FILE:cairn_cli> ${CMAKE_SOURCE_DIR}/README.md)
set_tests_properties(tour.readme PROPERTIES LABELS integration TIMEOUT 180
                     RUN_SERIAL TRUE)
