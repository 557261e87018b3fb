# Test registration.  Every test case is its own ctest test, so
# `ctest -R table` works and a failure names its case:
#
#   cairn_test(<file.c> LABELS <labels...> TESTS <case...> [TIMEOUT s])
#
# builds tests/<dir>/<file.c> into one executable and registers
# "<exe>.<case>" running `<exe> <case>`; the executable runs the cmocka
# case of that exact name (tests/test.h: CAIRN_TEST_MAIN).  Labels used:
#   unit, integration, stress, concurrency (the TSan build runs only
#   "concurrency").
function(cairn_test file)
  cmake_parse_arguments(T "" "TIMEOUT" "LABELS;TESTS" ${ARGN})
  get_filename_component(exe ${file} NAME_WE)
  if(NOT TARGET ${exe})
    add_executable(${exe} ${CMAKE_SOURCE_DIR}/tests/${file})
    target_include_directories(${exe} PRIVATE ${CMAKE_SOURCE_DIR}/src
                               ${CMAKE_SOURCE_DIR}/tests)
    target_link_libraries(${exe} PRIVATE cairn PkgConfig::CMOCKA)
    target_compile_definitions(${exe} PRIVATE
      CAIRN_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  foreach(case ${T_TESTS})
    add_test(NAME ${exe}.${case} COMMAND ${exe} ${case})
    set_tests_properties(${exe}.${case} PROPERTIES LABELS "${T_LABELS}"
                         TIMEOUT ${T_TIMEOUT})
  endforeach()
endfunction()

file(GLOB CAIRN_TEST_LISTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/*.cmake)
foreach(list ${CAIRN_TEST_LISTS})
  include(${list})
endforeach()
