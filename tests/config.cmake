# Configuration loader (src/server/config.c, compiled into the test since
# it lives in the cairn executable): tests/unit/test_config.c.
cairn_test(unit/test_config.c LABELS unit
  TESTS defaults_match_the_modules file_then_env_then_flag every_value_type
        flags_and_shortcuts tokens_and_fsms
        enabled_false_turns_breaker_and_throttle_off error_unknown_key
        error_bad_value error_out_of_range error_bad_token error_bad_fsm_line
        error_unknown_flag file_errors example_config_loads
        docs_list_every_key_with_its_default)
target_sources(test_config PRIVATE ${CMAKE_SOURCE_DIR}/src/server/config.c)
target_link_libraries(test_config PRIVATE PkgConfig::INIH)
