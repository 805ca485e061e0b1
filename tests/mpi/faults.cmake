# Faults of data-parallel training on 2 ranks (see data_parallel.cpp):
#  1. a rank that fails (rank 1 on a bad record, rank 0 on an unwritable output directory) ends the
#     whole job within seconds, its message on stderr, the status non-zero;
#  2. a rank killed with SIGKILL mid-run brings the job down; the job then resumes from its last
#     checkpoint and ends with the parameters of a run that was never interrupted.
#   cmake -DMPIEXEC=mpirun -DNUMPROC_FLAG=-np -DPROGRAM=dm2s2_mpi_tests -DSCRATCH=dir -P faults.cmake
foreach(var MPIEXEC NUMPROC_FLAG PROGRAM SCRATCH)
  if(NOT ${var})
    message(FATAL_ERROR "faults.cmake: pass -D${var}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${SCRATCH}")
file(MAKE_DIRECTORY "${SCRATCH}")

# run(NAME MODE DIR): runs the program on 2 ranks; sets NAME_rc, NAME_out, NAME_err, NAME_seconds.
function(run name mode dir)
  string(TIMESTAMP start "%s")
  execute_process(COMMAND ${MPIEXEC} ${NUMPROC_FLAG} 2 ${PROGRAM} ${mode} ${dir}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  string(TIMESTAMP stop "%s")
  math(EXPR seconds "${stop} - ${start}")
  message(STATUS "${mode}: status ${rc} after ${seconds} s")
  set(${name}_rc "${rc}" PARENT_SCOPE)
  set(${name}_out "${out}" PARENT_SCOPE)
  set(${name}_err "${err}" PARENT_SCOPE)
  set(${name}_seconds "${seconds}" PARENT_SCOPE)
endfunction()

# 1. rank 1 fails on a record; rank 0 is waiting for it.
run(fault --fault "${SCRATCH}/fault")
if(fault_rc EQUAL 0 OR fault_rc MATCHES "timeout")
  message(FATAL_ERROR "a failing rank should end the job with a non-zero status, got '${fault_rc}'\n${fault_err}")
endif()
if(NOT fault_err MATCHES "rank 1: [^\n]*id 99")
  message(FATAL_ERROR "the failing rank's message is missing from stderr:\n${fault_err}")
endif()
if(fault_seconds GREATER 30)
  message(FATAL_ERROR "the job took ${fault_seconds} s to end after a rank failed")
endif()

# ... and rank 0 cannot write its checkpoint (a file stands where its directory should be).
file(WRITE "${SCRATCH}/blocker" "")
run(unwritable --unwritable "${SCRATCH}/blocker/out")
if(unwritable_rc EQUAL 0 OR unwritable_rc MATCHES "timeout" OR NOT unwritable_err MATCHES "rank 0: [^\n]*blocker")
  message(FATAL_ERROR "rank 0 failing to write should end the job with its message, got '${unwritable_rc}'\n${unwritable_err}")
endif()
if(unwritable_seconds GREATER 30)
  message(FATAL_ERROR "the job took ${unwritable_seconds} s to end after rank 0 failed")
endif()

# 2. the run uninterrupted, then killed after step 2 and resumed.
run(whole --uninterrupted "${SCRATCH}/whole")
if(NOT whole_rc EQUAL 0 OR NOT whole_out MATCHES "digest ([0-9a-f]+)")
  message(FATAL_ERROR "the uninterrupted run failed: ${whole_rc}\n${whole_out}\n${whole_err}")
endif()
set(expected "${CMAKE_MATCH_1}")
run(killed --kill "${SCRATCH}/killed")
if(killed_rc EQUAL 0 OR killed_rc MATCHES "timeout")
  message(FATAL_ERROR "a rank killed mid-run should bring the job down, got '${killed_rc}'\n${killed_err}")
endif()
if(NOT EXISTS "${SCRATCH}/killed/training_state.safetensors")
  message(FATAL_ERROR "no checkpoint survived the killed run")
endif()
run(resumed --resume "${SCRATCH}/killed")
if(NOT resumed_rc EQUAL 0 OR NOT resumed_out MATCHES "digest ([0-9a-f]+)")
  message(FATAL_ERROR "the resumed run failed: ${resumed_rc}\n${resumed_out}\n${resumed_err}")
endif()
if(NOT CMAKE_MATCH_1 STREQUAL expected)
  message(FATAL_ERROR "the resumed run ends with parameters ${CMAKE_MATCH_1}, the uninterrupted one with ${expected}")
endif()
message(STATUS "a failing rank ended the job in ${fault_seconds} s; the killed run resumed to the uninterrupted parameters (${expected})")
