# Fault tests (registered from tests/integration/CMakeLists.txt): the real fieldsyncd and
# devices on 127.0.0.1, with things going wrong on purpose.
#
# fault_push.c      kill -9 of the server at each point of a push (FIELDSYNC_FAULT, server/
#                   fault.c), restart, sync: every change exactly once, replicas converged
# fault_group.c     group commit: several devices' pushes in one transaction, killed at its
#                   COMMIT, its COMMIT failing, the disk full in the middle of it: no ack for
#                   what is not stored, resends accepted once, the others' data intact
# fault_store.c     disk full (a small tmpfs, else RLIMIT_FSIZE), store locked or read-only,
#                   schema missing or corrupt, backup restored under running devices
# fault_clock.c     device clocks hours off and jumping during a sync; past the drift bound
# fault_cycles.c    1,000 connect/disconnect cycles and 1,000 aborted syncs: descriptors and
#                   memory of the daemon back to baseline
# fault_hostile.c   hostile peers: malformed changes of every kind, clocks at the extremes,
#                   revoked devices, a thousand sessions for one device, slowloris
# fault_scope.c     scope red team: other villages' records through every message, role
#                   limits; the bytes sent back never name what the user may not see
# fault_auth.c      tokens and passwords: hashes at rest, per-address and per-device limits
# fault_login.c     supervisor logins hash on the login worker: a device syncs while logins
#                   are in progress; limits under concurrent guesses; 503 + Retry-After when
#                   the worker's queue is full; a stop with logins queued exits cleanly
#
# Every binary links the SDK, the engine and both test clients (client_support.c for devices
# through the SDK, server_client.c for a raw-socket WebSocket client that sends what a correct
# client never would). Each binary takes a CASE; one CTest test per case. Long variants are
# behind environment variables documented in each file (defaults fit the CI budget).
if(TARGET fieldsyncd AND TARGET fieldsync)
  find_package(Threads REQUIRED)
  set(FS_FAULT_ENV
      "FIELDSYNC_SCHEMA=${CMAKE_SOURCE_DIR}/schema/fieldsync.yaml"
      "FIELDSYNCD=$<TARGET_FILE:fieldsyncd>"
      "FIELDSYNC_CLI=$<TARGET_FILE:fieldsync-cli>")
  # name -> cases (a single "run" when the binary has none)
  set(FS_FAULT_TESTS
      "fault_push:run"
      "fault_group:kill,commitfail,diskfull"
      "fault_store:diskfull,locked,readonly,schema,restore"
      "fault_clock:run"
      "fault_cycles:connect,aborted"
      "fault_hostile:changes,clocks,sequences,revoked,cursor,sessions,slowloris"
      "fault_scope:run"
      "fault_auth:run"
      "fault_login:flood,busy")
  foreach(entry ${FS_FAULT_TESTS})
    string(REPLACE ":" ";" parts "${entry}")
    list(GET parts 0 name)
    list(GET parts 1 cases)
    string(REPLACE "," ";" cases "${cases}")
    set(src ${CMAKE_CURRENT_SOURCE_DIR}/${name}.c)
    if(NOT EXISTS ${src})
      continue()
    endif()
    add_executable(${name} ${src} ${CMAKE_CURRENT_SOURCE_DIR}/fault_support.c
                           ${CMAKE_CURRENT_SOURCE_DIR}/client_support.c
                           ${CMAKE_CURRENT_SOURCE_DIR}/server_client.c)
    target_link_libraries(${name} PRIVATE fieldsync fssync PkgConfig::SQLITE3
                                          PkgConfig::MSGPACK PkgConfig::ZSTD Threads::Threads)
    target_link_libraries(${name} PRIVATE rawws) # tests/support/rawws.c
    target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests
                                               ${CMAKE_SOURCE_DIR}/client-sdk
                                               ${CMAKE_CURRENT_SOURCE_DIR})
    add_dependencies(${name} fieldsyncd fieldsync-cli)
    foreach(case ${cases})
      add_test(NAME fault.${name}.${case}
               COMMAND ${name} --bin $<TARGET_FILE:fieldsyncd> ${case})
      set_tests_properties(fault.${name}.${case} PROPERTIES TIMEOUT 300
                           ENVIRONMENT "${FS_FAULT_ENV}")
    endforeach()
  endforeach()
endif()
if(TARGET fault_login)
  target_link_libraries(fault_login PRIVATE PkgConfig::SODIUM) # its expensive test hashes
endif()

# The soak (tests/soak/soak.c, tests/soak/soak.sh): 200 simulated devices against one daemon
# for SOAK_SECONDS (the long run: SOAK_SECONDS=1800 tests/soak/soak.sh). CTest runs a short
# variant: 40 devices, 4 workers, 60 s.
if(TARGET fieldsyncd AND TARGET fieldsync AND EXISTS ${CMAKE_SOURCE_DIR}/tests/soak/soak.c)
  add_executable(soak ${CMAKE_SOURCE_DIR}/tests/soak/soak.c
                      ${CMAKE_CURRENT_SOURCE_DIR}/fault_support.c
                      ${CMAKE_CURRENT_SOURCE_DIR}/client_support.c
                      ${CMAKE_CURRENT_SOURCE_DIR}/server_client.c)
  target_link_libraries(soak PRIVATE fieldsync fssync PkgConfig::SQLITE3 PkgConfig::MSGPACK
                                     PkgConfig::ZSTD Threads::Threads)
  target_include_directories(soak PRIVATE ${CMAKE_SOURCE_DIR}/tests ${CMAKE_SOURCE_DIR}/client-sdk
                                          ${CMAKE_CURRENT_SOURCE_DIR})
  add_dependencies(soak fieldsyncd fieldsync-cli)
  add_test(NAME fault.soak.short COMMAND soak --bin $<TARGET_FILE:fieldsyncd>)
  set_tests_properties(fault.soak.short PROPERTIES TIMEOUT 600 ENVIRONMENT
    "${FS_FAULT_ENV};SOAK_SECONDS=60;SOAK_DEVICES=40;SOAK_WORKERS=4")
endif()

# ASan build (FS_SANITIZE=ON, scripts/test.sh): every integration test of this directory, and
# every process it starts (fieldsyncd, the CLI, node's children), runs with LeakSanitizer on
# and a leak turned into SIGABRT (abort_on_error), so that the helpers that stop a process
# (exit_check.h) fail the test on a leak even when run by plain `ctest` without
# scripts/test.sh's variables. The reports go to each process's stderr: the daemon's log file
# the test names, or the test's own output. fault.cmake is included last, so it sees them all.
if(FS_SANITIZE)
  get_property(FS_IT_TESTS DIRECTORY PROPERTY TESTS)
  foreach(t ${FS_IT_TESTS})
    set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT
                 "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1"
                 "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  endforeach()
endif()
