# The FastAPI example (examples/fastapi) end to end: redis-server, kiln worker
# with image.so, uvicorn serving the app, an HTTP client
# (tests/media/test_fastapi.py).  media.fastapi.<name> runs
# FastapiTest.test_<name>.  api_errors needs no plugin; the others need the
# image plugin, which is skipped at configure time when libvips is missing.
set(KILN_FASTAPI_TESTS api_errors)
if(TARGET image)
  list(APPEND KILN_FASTAPI_TESTS thumbnail decompression_bomb broken_upload)
else()
  message(WARNING "tests/media/fastapi.cmake: the image plugin is not built; "
                  "only media.fastapi.api_errors is registered")
endif()
foreach(t ${KILN_FASTAPI_TESTS})
  add_test(NAME media.fastapi.${t}
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_fastapi.py FastapiTest.test_${t})
  set_tests_properties(media.fastapi.${t} PROPERTIES
    TIMEOUT 60
    LABELS "media;fastapi"
    SKIP_REGULAR_EXPRESSION "python3-fastapi, uvicorn and python3-httpx are needed"
    ENVIRONMENT "KILN_BIN=$<TARGET_FILE:kiln>;KILN_PLUGINS=${KILN_PLUGIN_DIR}")
endforeach()
