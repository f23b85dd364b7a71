# perfstream_layer(): one library per folder of collector/, declared bottom to top in collector/CMakeLists.txt.
#
#   perfstream_layer(NAME [USES name...] [SOURCES file...])
#
# makes perfstream_NAME from collector/NAME/ and links what USES names: layers declared before it (so a
# layer can only ever link layers below it, and the graph has no cycle), and the generated or external code
# below. USES is also exactly what the layer's files may #include: check_layers.cmake, run by the build
# before any layer compiles, fails on an include of a layer above, of a lower layer or library not in
# USES, or of a file outside the layers (bench/, tests/). A layer without SOURCES yet is an INTERFACE
# library, so that the layers above can already name it.
#
# Generated and external code a layer may use (name: targets linked):
set(PERFSTREAM_USE_proto   perfstream_proto)                # "perfstream.pb.h"
set(PERFSTREAM_USE_bpf     perfstream_bpf_skeletons)        # "events.h", "<probe>.skel.h" (linked privately)
set(PERFSTREAM_USE_libbpf  PkgConfig::LIBBPF)               # <bpf/...>
set(PERFSTREAM_USE_asio    Boost::headers)                  # <boost/...>
set(PERFSTREAM_USE_openssl OpenSSL::SSL OpenSSL::Crypto)    # <openssl/...>, <boost/asio/ssl...>
set(PERFSTREAM_USE_zstd    PkgConfig::LIBZSTD)              # <zstd.h>
set(PERFSTREAM_USE_zlib    ZLIB::ZLIB)                      # <zlib.h>
set(PERFSTREAM_USE_rdkafka PkgConfig::RDKAFKA)              # <librdkafka/...>
set(PERFSTREAM_LAYERS "")

function(perfstream_layer name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "USES;SOURCES")
  set(target perfstream_${name})
  if(arg_SOURCES)
    add_library(${target} STATIC ${arg_SOURCES})
    set(public PUBLIC)
    set(private PRIVATE)
  else()
    add_library(${target} INTERFACE)
    set(public INTERFACE)
    set(private INTERFACE)
  endif()
  foreach(use IN LISTS arg_USES)
    if(use IN_LIST PERFSTREAM_LAYERS)
      target_link_libraries(${target} ${public} perfstream_${use})
    elseif(use STREQUAL "bpf")
      target_link_libraries(${target} ${private} ${PERFSTREAM_USE_bpf})
    elseif(DEFINED PERFSTREAM_USE_${use})
      target_link_libraries(${target} ${public} ${PERFSTREAM_USE_${use}})
    else()
      message(FATAL_ERROR "perfstream_layer(${name}): '${use}' is not a layer declared before ${name} "
                          "(${PERFSTREAM_LAYERS}) nor one of proto bpf libbpf asio openssl zstd zlib rdkafka")
    endif()
  endforeach()
  target_include_directories(${target} ${public} ${PROJECT_SOURCE_DIR})
  target_compile_definitions(${target} ${public} BOOST_ASIO_NO_DEPRECATED PERFSTREAM_VERSION="${PROJECT_VERSION}")
  target_link_libraries(${target} ${public} Threads::Threads)
  set(PERFSTREAM_LAYERS ${PERFSTREAM_LAYERS} ${name} PARENT_SCOPE)
  set(PERFSTREAM_LAYER_USES_${name} ${arg_USES} PARENT_SCOPE)
endfunction()

# After the last layer: writes the table check_layers.cmake reads and the target that runs it. The target is
# always out of date, so the check runs on every build (it reads about a hundred files: milliseconds), and
# every layer depends on it, so a bad include fails whatever target is built.
function(perfstream_check_layers)
  set(table ${CMAKE_CURRENT_BINARY_DIR}/layers_table.cmake)
  set(content "set(PERFSTREAM_LAYERS ${PERFSTREAM_LAYERS})\n")
  foreach(layer IN LISTS PERFSTREAM_LAYERS)
    string(APPEND content "set(PERFSTREAM_LAYER_USES_${layer} ${PERFSTREAM_LAYER_USES_${layer}})\n")
  endforeach()
  file(CONFIGURE OUTPUT ${table} CONTENT "${content}" @ONLY)
  add_custom_target(perfstream_layer_check
    COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DTABLE=${table}
            -P ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/check_layers.cmake
    COMMENT "Checking that each layer of collector/ includes only the layers below it that it uses"
    VERBATIM)
  foreach(layer IN LISTS PERFSTREAM_LAYERS)
    add_dependencies(perfstream_${layer} perfstream_layer_check)
  endforeach()
endfunction()
