# The command-line tool, run as a user would.
cairn_test(integration/test_cli.c LABELS integration
           TESTS verify_exit_codes version_and_usage)
target_compile_definitions(test_cli PRIVATE
  CAIRN_BIN="$<TARGET_FILE:cairn_cli>")
add_dependencies(test_cli cairn_cli)
