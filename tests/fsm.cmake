# State machines and value cells (tests/unit/test_fsm.c).  Machine cases
# are a conformance suite run against both implementations:
# <case>_lockfree and <case>_mutex.  Multi-threaded cases carry the
# "concurrency" label, which the TSan build runs.
set(FSM_TWIN_CASES fire_follows_the_table invalid_transition_changes_nothing
    guard_rejection initial_context_and_options statistics_count_every_outcome
    wait_times_out_without_change)
set(FSM_TWIN_THREADED_CASES wait_wakes_on_transition
    racing_triggers_have_one_winner context_applied_only_by_winner
    no_lost_wakeups)
set(FSM_CASES position_definition_parses explicit_states_and_quotes
    definition_errors_name_the_line builder_takes_lines_from_a_config_reader
    trigger_lookup_full_table cell_store_and_load)
set(FSM_THREADED_CASES cell_reads_are_never_torn)
foreach(c ${FSM_TWIN_CASES})
  list(APPEND FSM_CASES ${c}_lockfree ${c}_mutex)
endforeach()
foreach(c ${FSM_TWIN_THREADED_CASES})
  list(APPEND FSM_THREADED_CASES ${c}_lockfree ${c}_mutex)
endforeach()
cairn_test(unit/test_fsm.c LABELS unit TESTS ${FSM_CASES})
cairn_test(unit/test_fsm.c LABELS unit concurrency TESTS ${FSM_THREADED_CASES}
           TIMEOUT 300)
