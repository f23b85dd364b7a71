# The layer check: fails when a file of collector/<layer>/ includes something its layer does not USE.
# Every layer library has the whole source tree on its include path, so the compiler alone would accept an
# include against the flow; this script is what refuses it. The build runs it before any layer compiles
# (target perfstream_layer_check, made by perfstream_check_layers() in layers.cmake), on every build.
#
#   cmake -DSOURCE_DIR=<project root> -DTABLE=<build>/collector/layers_table.cmake -P check_layers.cmake
#
# TABLE (written at configure time from the perfstream_layer() calls in collector/CMakeLists.txt) sets
# PERFSTREAM_LAYERS (bottom to top) and PERFSTREAM_LAYER_USES_<layer>. An include is classified as:
#   "collector/<x>/..."                  layer x
#   "perfstream.pb.h", <google/protobuf/> proto     (generated protobuf classes)
#   "events.h", "<name>.skel.h"          bpf       (BPF record structs and skeletons)
#   <bpf/...>                            libbpf
#   <boost/asio/ssl...>, <openssl/...>   openssl (and asio)
#   <boost/...>                          asio
#   <zstd.h>, <zlib.h>, <librdkafka/...> zstd, zlib, rdkafka
# Any other quoted include (bench/..., testing/..., a path not from the top) is refused; any other angle
# include (the C++ and C libraries, linux/) is not checked.
cmake_minimum_required(VERSION 3.25)
if(NOT SOURCE_DIR OR NOT TABLE)
  message(FATAL_ERROR "usage: cmake -DSOURCE_DIR=DIR -DTABLE=FILE -P check_layers.cmake")
endif()
include(${TABLE})

set(problems "")
set(checked 0)

# What one #include line needs, in `needs` (a list); `bad` when it belongs to nothing a layer may use.
function(classify header quoted)
  set(needs "")
  set(bad "")
  if(quoted)
    if(header MATCHES "^collector/([^/]+)/")
      set(needs ${CMAKE_MATCH_1})
    elseif(header STREQUAL "perfstream.pb.h")
      set(needs proto)
    elseif(header STREQUAL "events.h" OR header MATCHES "^[a-z_]+\\.skel\\.h$")
      set(needs bpf)
    else()
      set(bad "not a header of a layer (collector/<layer>/...), the protobuf classes or the BPF skeletons")
    endif()
  else()
    if(header MATCHES "^bpf/")
      set(needs libbpf)
    elseif(header MATCHES "^boost/asio/ssl")
      set(needs asio openssl)
    elseif(header MATCHES "^boost/")
      set(needs asio)
    elseif(header MATCHES "^openssl/")
      set(needs openssl)
    elseif(header MATCHES "^zstd(_errors)?\\.h$")
      set(needs zstd)
    elseif(header STREQUAL "zlib.h")
      set(needs zlib)
    elseif(header MATCHES "^librdkafka/")
      set(needs rdkafka)
    elseif(header MATCHES "^google/protobuf/")
      set(needs proto)
    endif()
  endif()
  set(needs "${needs}" PARENT_SCOPE)
  set(bad "${bad}" PARENT_SCOPE)
endfunction()

# Every folder of collector/ must be a declared layer, so that a new folder is checked too.
file(GLOB entries RELATIVE ${SOURCE_DIR}/collector ${SOURCE_DIR}/collector/*)
foreach(entry IN LISTS entries)
  if(IS_DIRECTORY ${SOURCE_DIR}/collector/${entry} AND NOT entry IN_LIST PERFSTREAM_LAYERS)
    string(APPEND problems "collector/${entry}/: not a layer: declare it with perfstream_layer(${entry} USES ...) "
                           "in collector/CMakeLists.txt, between the layers it uses and those that use it\n")
  endif()
endforeach()

foreach(layer IN LISTS PERFSTREAM_LAYERS)
  list(FIND PERFSTREAM_LAYERS ${layer} rank)
  set(uses ${PERFSTREAM_LAYER_USES_${layer}})
  file(GLOB files RELATIVE ${SOURCE_DIR} ${SOURCE_DIR}/collector/${layer}/*.hpp ${SOURCE_DIR}/collector/${layer}/*.cpp
       ${SOURCE_DIR}/collector/${layer}/*.h ${SOURCE_DIR}/collector/${layer}/*.c)
  foreach(file IN LISTS files)
    math(EXPR checked "${checked} + 1")
    file(STRINGS ${SOURCE_DIR}/${file} lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
    foreach(line IN LISTS lines)
      string(REGEX MATCH "include[ \t]*([<\"])([^>\"]+)[>\"]" _ "${line}")
      set(header ${CMAKE_MATCH_2})
      if(CMAKE_MATCH_1 STREQUAL "\"")
        classify(${header} TRUE)
      else()
        classify(${header} FALSE)
      endif()
      if(CMAKE_MATCH_1 STREQUAL "<")
        set(where "${file}: #include <${header}>")
      else()
        set(where "${file}: #include \"${header}\"")
      endif()
      list(APPEND used_${layer} ${needs})
      if(bad)
        string(APPEND problems "${where}: ${bad}\n")
      endif()
      foreach(need IN LISTS needs)
        if(need STREQUAL layer OR need IN_LIST uses)
          continue()
        endif()
        list(FIND PERFSTREAM_LAYERS ${need} need_rank)
        if(need_rank GREATER_EQUAL rank)
          string(APPEND problems "${where}: against the flow: ${layer} may not include ${need}, a layer above it; "
                                 "move the code to ${need} or higher, or what it needs down to ${layer}\n")
        elseif(need_rank GREATER_EQUAL 0)
          string(APPEND problems "${where}: ${need} is below ${layer} but not in its USES: add it to "
                                 "perfstream_layer(${layer} USES ...) in collector/CMakeLists.txt\n")
        else()
          string(APPEND problems "${where}: ${layer} does not use '${need}': add it to perfstream_layer(${layer} "
                                 "USES ...) in collector/CMakeLists.txt if this layer really needs it\n")
        endif()
      endforeach()
    endforeach()
  endforeach()
endforeach()

if(PRINT_USES)  # -DPRINT_USES=ON: what each layer's files include, for its USES
  foreach(layer IN LISTS PERFSTREAM_LAYERS)
    if(used_${layer})
      list(REMOVE_DUPLICATES used_${layer})
      list(REMOVE_ITEM used_${layer} ${layer})
    endif()
    message(NOTICE "${layer}: ${used_${layer}}")
  endforeach()
endif()
if(problems)
  message(NOTICE "${problems}")  # not wrapped, one line per include
  message(FATAL_ERROR "layer check: includes against the layers (collector/CMakeLists.txt)")
endif()
string(JOIN " " names ${PERFSTREAM_LAYERS})
message(STATUS "layer check: ${checked} files of ${names}: each includes only what its layer uses")
