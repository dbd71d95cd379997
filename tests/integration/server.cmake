# Server integration tests (registered from tests/integration/CMakeLists.txt).
#
# server_test (server_test.c + server_client.c): the real fieldsyncd started per test on
#   127.0.0.1 with port 0 (the port is read from its "listening" line), a private store in a
#   temp directory, devices enrolled with the real admin commands, the protocol spoken over
#   a raw-socket WebSocket client. One CTest test per case; each stops its daemons by pid
#   with SIGTERM and checks they exit 0.
# server_admin.sh: the admin command line (usage, exit codes, --json, errors).
if(TARGET fieldsyncd)
  set(FS_SERVER_TEST_ENV "FIELDSYNC_SCHEMA=${CMAKE_SOURCE_DIR}/schema/fieldsync.yaml")
  add_executable(server_test ${CMAKE_CURRENT_SOURCE_DIR}/server_test.c
                             ${CMAKE_CURRENT_SOURCE_DIR}/server_client.c)
  target_link_libraries(server_test PRIVATE fssync PkgConfig::SQLITE3 PkgConfig::MSGPACK
                                            PkgConfig::ZSTD)
  target_link_libraries(server_test PRIVATE rawws) # tests/support/rawws.c
  target_include_directories(server_test PRIVATE ${CMAKE_SOURCE_DIR}/tests
                                                 ${CMAKE_CURRENT_SOURCE_DIR})
  add_dependencies(server_test fieldsyncd)
  set(FS_SERVER_CASES auth sync resume scope conflict review ledger malformed shutdown http
                      idle admin_data versions busy parked abbrev pipeline durable)
  foreach(case ${FS_SERVER_CASES})
    add_test(NAME server.${case}
             COMMAND server_test --bin $<TARGET_FILE:fieldsyncd> ${case})
    set_tests_properties(server.${case} PROPERTIES TIMEOUT 180
                         ENVIRONMENT "${FS_SERVER_TEST_ENV}")
  endforeach()
  add_test(NAME server.admin
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/server_admin.sh $<TARGET_FILE:fieldsyncd>)
  set_tests_properties(server.admin PROPERTIES TIMEOUT 120 ENVIRONMENT "${FS_SERVER_TEST_ENV}")
  add_test(NAME server.durability
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/server_sync.sh $<TARGET_FILE:fieldsyncd>)
  set_tests_properties(server.durability PROPERTIES TIMEOUT 120 ENVIRONMENT "${FS_SERVER_TEST_ENV}")
endif()
