# The video plugin (plugins/video) against files made during the tests by
# ffmpeg (tests/media/test_video.py): media.video.<name> runs
# VideoTest.test_<name>.  Skipped with a warning when the plugin is not
# built (FFmpeg's development files missing).
if(TARGET video)
  set(KILN_VIDEO_TESTS
    probe thumbnail_jpeg thumbnail_png rotation thumbnail_at_end_and_beyond bad_arguments
    transcode transcode_audio soft_time_limit progress_worker
    limit_max_duration limit_max_width limit_max_output_pixels limit_max_frames bad_settings
    zero_byte text_named_mp4 not_video truncated_mp4 sparse_4g_no_index sparse_4g_index_then_zeros sparse_4g_huge_sample
    bad_inputs_then_good_worker)
  foreach(t ${KILN_VIDEO_TESTS})
    add_test(NAME media.video.${t}
      COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_video.py VideoTest.test_${t})
    set_tests_properties(media.video.${t} PROPERTIES
      TIMEOUT 90
      LABELS "media;video"
      ENVIRONMENT "KILN_BIN=$<TARGET_FILE:kiln>;KILN_PLUGINS=${KILN_PLUGIN_DIR}")
  endforeach()
else()
  message(WARNING "tests/media/video.cmake: the video plugin is not built; no media.video tests")
endif()
