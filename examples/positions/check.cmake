# Runs EXE with ARGS (a space-separated string); fails unless it exits 0
# and its standard output matches every EXPECT_<n> regular expression.
separate_arguments(argv UNIX_COMMAND "${ARGS}")
execute_process(COMMAND ${EXE} ${argv} RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${EXE} exited with ${rc}: ${err}")
endif()
foreach(i RANGE 1 20)
  if(DEFINED EXPECT_${i})
    if(NOT out MATCHES "${EXPECT_${i}}")
      message(FATAL_ERROR "output does not match '${EXPECT_${i}}'")
    endif()
  endif()
endforeach()
