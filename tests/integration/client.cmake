# Client SDK tests (registered from tests/integration/CMakeLists.txt).
#
# client_local_*.c: the device SDK with no server (records, validation, overlay, outbox
#   ordering and fast-lane numbering, refusal undo, cancel and back-off against dead peers).
#   They link the SDK and the engine and may include client-sdk/internal.h.
# client_it_*.c: the real server binary (fieldsyncd) and the real CLI (fieldsync) on
#   127.0.0.1, started as processes and stopped by PID. Registered only when the server
#   target exists in this build.
find_package(Threads REQUIRED)
set(FS_CLIENT_TEST_ENV "FIELDSYNC_SCHEMA=${CMAKE_SOURCE_DIR}/schema/fieldsync.yaml")

file(GLOB CLIENT_LOCAL_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/client_local_*.c)
foreach(src ${CLIENT_LOCAL_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE fieldsync fssync PkgConfig::LWS PkgConfig::SQLITE3
                                        PkgConfig::MSGPACK Threads::Threads)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/client-sdk
                                             ${CMAKE_SOURCE_DIR}/tests)
  add_test(NAME client.${name} COMMAND ${name})
  set_tests_properties(client.${name} PROPERTIES TIMEOUT 300 ENVIRONMENT "${FS_CLIENT_TEST_ENV}")
endforeach()

if(TARGET fieldsyncd)
  file(GLOB CLIENT_IT_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/client_it_*.c)
  foreach(src ${CLIENT_IT_TESTS})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src} ${CMAKE_CURRENT_SOURCE_DIR}/client_support.c)
    target_link_libraries(${name} PRIVATE fieldsync PkgConfig::SQLITE3 Threads::Threads)
    target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests
                                               ${CMAKE_CURRENT_SOURCE_DIR})
    add_dependencies(${name} fieldsyncd fieldsync-cli)
    add_test(NAME client.${name} COMMAND ${name})
    set_tests_properties(client.${name} PROPERTIES TIMEOUT 600 ENVIRONMENT
      "${FS_CLIENT_TEST_ENV};FIELDSYNCD=$<TARGET_FILE:fieldsyncd>;FIELDSYNC_CLI=$<TARGET_FILE:fieldsync-cli>")
  endforeach()
else()
  message(STATUS "client integration tests (tests/integration/client_it_*.c) not registered: "
                 "no fieldsyncd target in this build (server/ has no CMakeLists.txt yet)")
endif()
