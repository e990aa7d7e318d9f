# The image plugin (tests/media/test_image.py): one ctest entry per test
# method; media.image.<name> runs ImageTest.test_<name>, or, for the worker
# tests, ImageWorkerTest.test_<name>.  Needs image.so (libvips-dev),
# ImageMagick's convert/identify and libvips-tools' vips; the worker tests
# also need redis-server and python3-celery.
if(TARGET image)
  # ImageTest: through `kiln run`.
  set(KILN_IMAGE_TESTS_ImageTest
    thumbnail_jpeg thumbnail_box thumbnail_no_enlarge
    resize_contain resize_cover resize_fill resize_one_side
    convert_formats format_from_extension convert_alpha_to_jpeg quality
    truncated_jpeg truncated_png bomb_png max_pixels_setting input_size_limit
    empty_file text_named_jpg gif_refused bmp_refused
    bad_args_batch missing_files write_failure output_limits settings_invalid
    soft_time_limit memory_100mp)
  # ImageWorkerTest: through `kiln worker`, a private redis-server and Celery.
  set(KILN_IMAGE_TESTS_ImageWorkerTest
    worker_files_outputs worker_hostile_sequence)
  foreach(cls ImageTest ImageWorkerTest)
    foreach(t ${KILN_IMAGE_TESTS_${cls}})
      add_test(NAME media.image.${t}
        COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_image.py ${cls}.test_${t})
      set_tests_properties(media.image.${t} PROPERTIES
        TIMEOUT 120
        LABELS "media;image"
        ENVIRONMENT "KILN_BIN=$<TARGET_FILE:kiln>;KILN_PLUGINS=${KILN_PLUGIN_DIR}")
    endforeach()
  endforeach()
endif()
