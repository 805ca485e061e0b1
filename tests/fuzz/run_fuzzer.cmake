# Runs one fuzz target for SECONDS seconds: the seeds first (every one must pass), then new inputs,
# kept in WORK_DIR/corpus; a crash, leak, sanitizer report, timeout or escaping exception fails the
# test, and the input that caused it is left in WORK_DIR as crash-*, leak-*, timeout-* or oom-*.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/corpus)
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024
    -dict=${DICTIONARY} -artifact_prefix=${WORK_DIR}/ -print_final_stats=1 ${WORK_DIR}/corpus ${SEEDS}
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${FUZZER} found a failure (status ${status}); the input is in ${WORK_DIR}")
endif()
