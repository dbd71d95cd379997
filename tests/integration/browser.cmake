# Browser test of the supervisor page (registered from tests/integration/CMakeLists.txt).
#
# browser.ledger: tests/browser/ledger.test.mjs drives Debian's chromium (headless) with
#   playwright-core from npm (pinned by tests/browser/package-lock.json; `npm ci` when
#   node_modules is missing; no browser download). It starts a real fieldsyncd with a demo
#   township made by the admin commands, creates data with the command-line device, and
#   checks the page: counts against the store, live updates, review resolution reaching a
#   device, CSV exports, script injection, refusals without a session. Screenshots go to
#   build/browser-artifacts/. Missing node or chromium is a failure, never a skip
#   (tests/browser/run.sh installs them with scripts/deps.sh test when it can).
if(TARGET fieldsyncd AND TARGET fieldsync-cli)
  add_test(NAME browser.ledger
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/browser/run.sh $<TARGET_FILE:fieldsyncd>
                   $<TARGET_FILE:fieldsync-cli> ${CMAKE_BINARY_DIR}/browser-artifacts)
  set_tests_properties(browser.ledger PROPERTIES TIMEOUT 300
    ENVIRONMENT "FIELDSYNC_SCHEMA=${CMAKE_SOURCE_DIR}/schema/fieldsync.yaml")
endif()
