# run_step(COMMAND...): runs a command from a CMake script and fails the script with the command and
# its output when it exits non-zero. Used by the package tests' scripts.
function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "step failed (${result}): ${ARGN}\n${out}")
  endif()
endfunction()
