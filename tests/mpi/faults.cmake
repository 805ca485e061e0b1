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

# expect_ended(NAME MODE DIR MESSAGE): the run must end every rank, non-zero, within 30 s, with MESSAGE
# (a regular expression) on stderr when one is given.
function(expect_ended name mode dir message)
  run(job ${mode} "${dir}")
  if(job_rc EQUAL 0 OR job_rc MATCHES "timeout")
    message(FATAL_ERROR "${name}: the job should end with a non-zero status, got '${job_rc}'\n${job_err}")
  endif()
  if(message AND NOT job_err MATCHES "${message}")
    message(FATAL_ERROR "${name}: the failing rank's message is missing from stderr:\n${job_err}")
  endif()
  if(job_seconds GREATER 30)
    message(FATAL_ERROR "${name}: the job took ${job_seconds} s to end")
  endif()
endfunction()

# digest_of(VAR MODE DIR): runs a training that must succeed; VAR receives its parameters' digest.
function(digest_of var mode dir)
  run(job ${mode} "${dir}")
  if(NOT job_rc EQUAL 0 OR NOT job_out MATCHES "digest ([0-9a-f]+)")
    message(FATAL_ERROR "${mode}: the run failed: ${job_rc}\n${job_out}\n${job_err}")
  endif()
  set(${var} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()

# 1. rank 1 fails on a record while rank 0 waits for it; rank 0 cannot write its checkpoint (a file
#    stands where its directory should be) while rank 1 goes on.
expect_ended("a failing rank 1" --fault "${SCRATCH}/fault" "rank 1: [^\n]*id 99")
file(WRITE "${SCRATCH}/blocker" "")
expect_ended("a failing rank 0" --unwritable "${SCRATCH}/blocker/out" "rank 0: [^\n]*blocker")

# 2. the run uninterrupted, then killed after step 2 and resumed.
digest_of(expected --uninterrupted "${SCRATCH}/whole")
expect_ended("a killed rank" --kill "${SCRATCH}/killed" "")
if(NOT EXISTS "${SCRATCH}/killed/training_state.safetensors")
  message(FATAL_ERROR "no checkpoint survived the killed run")
endif()
digest_of(resumed --resume "${SCRATCH}/killed")
if(NOT resumed STREQUAL expected)
  message(FATAL_ERROR "the resumed run ends with parameters ${resumed}, the uninterrupted one with ${expected}")
endif()
message(STATUS "failing ranks ended the job; the killed run resumed to the uninterrupted parameters (${expected})")
