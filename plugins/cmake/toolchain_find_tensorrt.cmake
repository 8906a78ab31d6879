# The one TensorRT lookup of the repository, included by plugins/lrn/CMakeLists.txt and
# examples/cpp/CMakeLists.txt (it ships in the wheel as toolchain/plugin_src/cmake/).
#
# Inputs (cache variables or -D):
#   TensorRT_ROOT               install prefix (include/ and lib/); also read from the environment.
#   TensorRT_INCLUDE_DIR        folder holding NvInfer.h (overrides the search).
#   TensorRT_LIBRARY            libnvinfer or libnvinfer_lean to link (overrides the search).
#   TOOLCHAIN_TRT_LIBRARY_KIND  auto (libnvinfer, else libnvinfer_lean), full or lean.
# Results:
#   TensorRT_INCLUDE_DIR, TensorRT_LIBRARY   found paths (cached; -NOTFOUND when missing).
#   TensorRT_VERSION_MAJOR       major version of the headers (set whenever headers are found).
#   TOOLCHAIN_TRT_LIBRARY_IS_LEAN ON when TensorRT_LIBRARY is libnvinfer_lean.
#   TensorRT_FOUND               headers and library both found.
#   TensorRT_MISSING             what was not found, as text ("NvInfer.h and ...").
# Headers and library of different majors are a FATAL_ERROR.
#
# Where it looks. Headers: TensorRT_INCLUDE_DIR, or <TensorRT_ROOT>/include[/<multiarch>].
# Library: TensorRT_LIBRARY, or under <TensorRT_ROOT> (lib, lib64, lib/<multiarch>,
# targets/<arch>-linux[-gnu]/lib), or the pip packages (tensorrt_libs / tensorrt /
# tensorrt_lean_libs ship the .so files but no headers), or system paths. libnvinfer is
# preferred; libnvinfer_lean is taken where only the lean runtime is present (what a lean or
# version-compatible deployment has), unless TOOLCHAIN_TRT_LIBRARY_KIND says otherwise.
include_guard(DIRECTORY)

set(TensorRT_ROOT "${TensorRT_ROOT}" CACHE PATH "TensorRT install prefix (include/ and lib/)")
if(NOT TensorRT_ROOT AND DEFINED ENV{TensorRT_ROOT})
  set(TensorRT_ROOT "$ENV{TensorRT_ROOT}")
endif()
set(TOOLCHAIN_TRT_LIBRARY_KIND "auto" CACHE STRING "TensorRT library to link against: auto, full or lean")
set_property(CACHE TOOLCHAIN_TRT_LIBRARY_KIND PROPERTY STRINGS auto full lean)
if(NOT TOOLCHAIN_TRT_LIBRARY_KIND MATCHES "^(auto|full|lean)$")
  message(FATAL_ERROR "TOOLCHAIN_TRT_LIBRARY_KIND must be auto, full or lean (got '${TOOLCHAIN_TRT_LIBRARY_KIND}')")
endif()

# find_path/find_library cache their results: a changed TensorRT_ROOT or library kind
# would otherwise keep the old headers and library. Forget whatever was found for a
# different setting (values the user passed with -D for this run are kept).
set(_trt_setting "${TensorRT_ROOT}|${TOOLCHAIN_TRT_LIBRARY_KIND}")
if(DEFINED _TOOLCHAIN_TRT_SETTING AND NOT _TOOLCHAIN_TRT_SETTING STREQUAL _trt_setting)
  foreach(_var TensorRT_INCLUDE_DIR TensorRT_LIBRARY)
    if("${${_var}}" STREQUAL "${_TOOLCHAIN_TRT_FOUND_${_var}}")  # ours, not a new -D value
      unset(${_var} CACHE)
    endif()
  endforeach()
endif()
set(_TOOLCHAIN_TRT_SETTING "${_trt_setting}" CACHE INTERNAL "TensorRT setting of the cached lookup")

set(_trt_multiarch "${CMAKE_LIBRARY_ARCHITECTURE}")
if(NOT _trt_multiarch)
  set(_trt_multiarch "${CMAKE_SYSTEM_PROCESSOR}-linux-gnu")
endif()
set(_trt_lib_hints "")
if(TensorRT_ROOT)
  foreach(_sub lib lib64 "lib/${_trt_multiarch}" "targets/${CMAKE_SYSTEM_PROCESSOR}-linux/lib"
          "targets/${CMAKE_SYSTEM_PROCESSOR}-linux-gnu/lib")
    list(APPEND _trt_lib_hints "${TensorRT_ROOT}/${_sub}")
  endforeach()
endif()
find_package(Python3 COMPONENTS Interpreter QUIET)
if(Python3_Interpreter_FOUND AND NOT TensorRT_ROOT)
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c
      "import importlib.util as u\nfor m in ('tensorrt_libs', 'tensorrt', 'tensorrt_lean_libs'):\n    s = u.find_spec(m)\n    if s and s.submodule_search_locations:\n        print(list(s.submodule_search_locations)[0])"
    OUTPUT_VARIABLE _trt_pip_dirs OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_trt_pip_dirs)
    string(REPLACE "\n" ";" _trt_pip_dirs "${_trt_pip_dirs}")
    list(APPEND _trt_lib_hints ${_trt_pip_dirs})
  endif()
endif()

if(TensorRT_ROOT)
  find_path(TensorRT_INCLUDE_DIR NvInfer.h HINTS "${TensorRT_ROOT}/include" "${TensorRT_ROOT}/include/${_trt_multiarch}"
            "${TensorRT_ROOT}" NO_DEFAULT_PATH)
else()
  find_path(TensorRT_INCLUDE_DIR NvInfer.h PATH_SUFFIXES include "include/${_trt_multiarch}")
endif()

# The versioned names cover the pip layout, which has no unversioned .so.
set(_trt_full_names nvinfer libnvinfer.so.11 libnvinfer.so.10)
set(_trt_lean_names nvinfer_lean libnvinfer_lean.so.11 libnvinfer_lean.so.10)
if(TOOLCHAIN_TRT_LIBRARY_KIND STREQUAL "full")
  set(_trt_name_sets _trt_full_names)
elseif(TOOLCHAIN_TRT_LIBRARY_KIND STREQUAL "lean")
  set(_trt_name_sets _trt_lean_names)
else()
  set(_trt_name_sets _trt_full_names _trt_lean_names)
endif()
foreach(_names IN LISTS _trt_name_sets)
  if(NOT TensorRT_LIBRARY)
    if(_trt_lib_hints)
      find_library(TensorRT_LIBRARY NAMES ${${_names}} HINTS ${_trt_lib_hints} NO_DEFAULT_PATH)
    endif()
    if(NOT TensorRT_LIBRARY AND NOT TensorRT_ROOT)
      find_library(TensorRT_LIBRARY NAMES ${${_names}})
    endif()
  endif()
endforeach()

foreach(_var TensorRT_INCLUDE_DIR TensorRT_LIBRARY)
  set(_TOOLCHAIN_TRT_FOUND_${_var} "${${_var}}" CACHE INTERNAL "what the lookup found for ${_var}")
endforeach()

set(TensorRT_MISSING "")
if(NOT TensorRT_INCLUDE_DIR)
  list(APPEND TensorRT_MISSING "NvInfer.h")
endif()
if(NOT TensorRT_LIBRARY)
  list(APPEND TensorRT_MISSING "libnvinfer.so(.10|.11) or libnvinfer_lean.so(.10|.11)")
endif()
string(REPLACE ";" " and " TensorRT_MISSING "${TensorRT_MISSING}")

set(TensorRT_VERSION_MAJOR "")
if(TensorRT_INCLUDE_DIR)
  # TensorRT 10.x+ headers define TRT_MAJOR_ENTERPRISE; older ones NV_TENSORRT_MAJOR.
  file(STRINGS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h" TensorRT_VERSION_MAJOR
       REGEX "^#define (TRT_MAJOR_ENTERPRISE|NV_TENSORRT_MAJOR) [0-9]+")
  string(REGEX MATCH "[0-9]+$" TensorRT_VERSION_MAJOR "${TensorRT_VERSION_MAJOR}")
  if(NOT TensorRT_VERSION_MAJOR)
    message(FATAL_ERROR "cannot read the TensorRT major version from ${TensorRT_INCLUDE_DIR}/NvInferVersion.h")
  endif()
endif()

set(TOOLCHAIN_TRT_LIBRARY_IS_LEAN OFF)
if(TensorRT_LIBRARY)
  get_filename_component(_trt_lib_real "${TensorRT_LIBRARY}" REALPATH)
  get_filename_component(_trt_lib_name "${_trt_lib_real}" NAME)
  if(_trt_lib_name MATCHES "nvinfer_lean")
    set(TOOLCHAIN_TRT_LIBRARY_IS_LEAN ON)
  endif()
endif()

if(TensorRT_INCLUDE_DIR AND TensorRT_LIBRARY)
  # IPluginRegistry's vtable differs between 10.x and 11.x: code compiled against one
  # major's headers and linked to the other's library registers nothing, or crashes.
  set(_trt_lib_major "")
  if(_trt_lib_name MATCHES "\\.so\\.([0-9]+)")
    set(_trt_lib_major "${CMAKE_MATCH_1}")
  endif()
  if(NOT _trt_lib_major)
    message(WARNING "cannot tell the major version of ${TensorRT_LIBRARY} (${_trt_lib_real}); "
                    "it must be TensorRT ${TensorRT_VERSION_MAJOR} like the headers in ${TensorRT_INCLUDE_DIR}")
  elseif(NOT _trt_lib_major STREQUAL TensorRT_VERSION_MAJOR)
    message(FATAL_ERROR "TensorRT version mismatch: headers ${TensorRT_INCLUDE_DIR} are TensorRT ${TensorRT_VERSION_MAJOR}, "
                        "library ${TensorRT_LIBRARY} (${_trt_lib_real}) is TensorRT ${_trt_lib_major}. "
                        "Point TensorRT_ROOT (or TensorRT_INCLUDE_DIR and TensorRT_LIBRARY) at one TensorRT release.")
  endif()
  set(TensorRT_FOUND TRUE)
else()
  set(TensorRT_FOUND FALSE)
endif()
