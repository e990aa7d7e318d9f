# install.cmake -- what `cmake --install` puts where, included last by the
# top-level CMakeLists.txt.
#
#   bin/kiln                                  the CLI
#   include/kiln/kiln.h                       the SDK, the only public header
#   <libdir>/pkgconfig/kiln.pc                pkg-config --cflags kiln
#   <libdir>/cmake/kiln/kilnConfig*.cmake     find_package(kiln): kiln::sdk, kiln_add_plugin()
#   <libdir>/kiln/plugins/<name>.so           bundled plugins (examples included, tests not)
#   share/doc/kiln/GUIDE.md                   the SDK guide
#
# Plugins link no kiln library: the runtime hands them its function table, so
# the SDK is a header plus jansson (the JSON type the API exposes).

include(CMakePackageConfigHelpers)

set(KILN_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/kiln)
set(KILN_INSTALL_PLUGINDIR ${CMAKE_INSTALL_LIBDIR}/kiln/plugins)

if(TARGET kiln)
  install(TARGETS kiln RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(FILES ${CMAKE_SOURCE_DIR}/sdk/include/kiln/kiln.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/kiln)
install(FILES ${CMAKE_SOURCE_DIR}/sdk/GUIDE.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

# Bundled plugins: every MODULE library that the top-level kiln_add_plugin()
# put in ${KILN_PLUGIN_DIR}, found by walking the directory tree, so no list
# has to be kept.  Directories under tests/ are skipped: hostile test plugins
# are never installed.
function(kiln__collect_plugins dir out)
  set(found "")
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t ${targets})
    get_target_property(type ${t} TYPE)
    get_target_property(outdir ${t} LIBRARY_OUTPUT_DIRECTORY)
    if(type STREQUAL "MODULE_LIBRARY" AND outdir STREQUAL KILN_PLUGIN_DIR)
      list(APPEND found ${t})
    endif()
  endforeach()
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(sub ${subdirs})
    file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR} ${sub})
    if(NOT rel MATCHES "^tests(/|$)")
      kiln__collect_plugins(${sub} more)
      list(APPEND found ${more})
    endif()
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()
kiln__collect_plugins(${CMAKE_SOURCE_DIR} KILN_BUNDLED_PLUGINS)
if(KILN_BUNDLED_PLUGINS)
  install(TARGETS ${KILN_BUNDLED_PLUGINS} LIBRARY DESTINATION ${KILN_INSTALL_PLUGINDIR})
endif()

# pkg-config.  Written at install time, so the paths are those of the prefix
# actually installed to (`cmake --install build --prefix /opt/kiln` included).
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(KILN_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(KILN_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(KILN_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(KILN_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
set(KILN_PC_PREFIX "@KILN_PC_PREFIX@") # filled in by the install step below
configure_file(${CMAKE_CURRENT_LIST_DIR}/kiln.pc.in ${CMAKE_BINARY_DIR}/kiln.pc.in @ONLY)
install(CODE "
  set(KILN_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${CMAKE_BINARY_DIR}/kiln.pc.in\" \"${CMAKE_BINARY_DIR}/kiln.pc\" @ONLY)
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\"
       TYPE FILE FILES \"${CMAKE_BINARY_DIR}/kiln.pc\")
")

# CMake package: kiln::sdk is the kiln_sdk interface target (header + jansson).
set_target_properties(kiln_sdk PROPERTIES EXPORT_NAME sdk)
install(TARGETS kiln_sdk EXPORT kilnTargets)
install(EXPORT kilnTargets NAMESPACE kiln:: DESTINATION ${KILN_INSTALL_CMAKEDIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/kilnConfig.cmake.in
  ${CMAKE_BINARY_DIR}/kilnConfig.cmake
  INSTALL_DESTINATION ${KILN_INSTALL_CMAKEDIR}
  PATH_VARS KILN_INSTALL_PLUGINDIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/kilnConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/kilnConfig.cmake ${CMAKE_BINARY_DIR}/kilnConfigVersion.cmake
        DESTINATION ${KILN_INSTALL_CMAKEDIR})
