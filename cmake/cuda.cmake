# CUDA backend (kernels/cuda, runtime/*_cuda.*, offload/*_cuda.*): the static library
# glmstream_cuda, its GPU tests and bench-gpu. Included at the end of CMakeLists.txt, after every
# target of the main file exists. GLM_CUDA=AUTO turns it on when nvcc is found, ON requires it,
# OFF leaves it out. The CPU library glmstream is the same either way.
#
# How it fits the main file's globs (which this file does not edit):
# - runtime/*.cc and offload/*.cc go into glmstream; the *_cuda.cc files include CUDA headers, so
#   they are taken out of glmstream here, always, and built into glmstream_cuda when CUDA is on.
# - tests/cuda_*_test.cc become test executables linked with glmstream only; here they also get
#   glmstream_cuda (and with it GLM_HAVE_CUDA=1). Built without CUDA, their bodies compile to one
#   test that skips with the reason.
# - bench/bench_gpu.cc becomes bench-gpu; likewise linked with glmstream_cuda here, and left out
#   of the default build (and a stub) when CUDA is off.
# - glm-generate-gpu (tools/glm_generate.cc linked with glmstream_cuda) is made here: the GPU mode
#   that glm-generate runs for --gpu-mem.

get_target_property(_glm_cpu_sources glmstream SOURCES)
list(FILTER _glm_cpu_sources EXCLUDE REGEX "_cuda\\.cc$")
set_property(TARGET glmstream PROPERTY SOURCES ${_glm_cpu_sources})

string(TOUPPER "${GLM_CUDA}" _glm_cuda_mode)
set(GLM_CUDA_ENABLED OFF)
if(NOT _glm_cuda_mode MATCHES "^(OFF|0|NO|FALSE)$")
  # nvcc is often not on PATH (the toolkit's default prefix is /usr/local/cuda).
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    find_program(_glm_nvcc nvcc)
    if(NOT _glm_nvcc)
      set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "CUDA compiler")
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(GLM_CUDA_ENABLED ON)
  elseif(_glm_cuda_mode STREQUAL "AUTO")
    message(STATUS "GLM_CUDA=AUTO: no working nvcc found, the CUDA backend is not built")
  else()
    message(FATAL_ERROR "GLM_CUDA=${GLM_CUDA} but no working CUDA compiler was found; "
                        "set CUDACXX or CMAKE_CUDA_COMPILER to nvcc, or configure with -DGLM_CUDA=OFF")
  endif()
endif()

# GPU test executables (the main file's test loop made them) and bench-gpu.
set(_glm_cuda_tests "")
if(GLM_BUILD_TESTS)
  file(GLOB _glm_cuda_test_sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cuda_*_test.cc)
  foreach(src ${_glm_cuda_test_sources})
    get_filename_component(name ${src} NAME_WE)
    if(TARGET ${name})
      list(APPEND _glm_cuda_tests ${name})
    endif()
  endforeach()
endif()

if(NOT GLM_CUDA_ENABLED)
  if(TARGET bench-gpu)
    set_target_properties(bench-gpu PROPERTIES EXCLUDE_FROM_ALL ON)
  endif()
  return()
endif()

# Architectures, unless the user (or CUDAARCHS) chose. sm_70 (V100) is the mission's first
# target, but CUDA 13 dropped Volta (and Pascal): there the list starts at sm_75. With a 12.x
# toolkit sm_70 is built too. sm_80 carries the tensor-core (mma.sync m16n8k16) quantized GEMV;
# sm_90 is native code for H100/H200. Every kernel has a Volta-clean path (see kernels/cuda/).
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  execute_process(COMMAND ${CMAKE_CUDA_COMPILER} --version OUTPUT_VARIABLE _glm_nvcc_version
                  ERROR_QUIET)
  string(REGEX MATCH "release ([0-9]+)\\.([0-9]+)" _ "${_glm_nvcc_version}")
  set(_glm_cuda_major "${CMAKE_MATCH_1}")
  if(_glm_cuda_major AND _glm_cuda_major LESS 13)
    set(CMAKE_CUDA_ARCHITECTURES "70;75;80;90")
  else()
    set(CMAKE_CUDA_ARCHITECTURES "75;80;90")
  endif()
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
# C++20 like the rest of the project: nvcc has it since CUDA 12.0, CMake before 3.26 does not know
# the flag.
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION AND CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.0)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
message(STATUS "CUDA backend: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures "
               "${CMAKE_CUDA_ARCHITECTURES}")

file(GLOB GLM_CUDA_SOURCES CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu
     ${CMAKE_SOURCE_DIR}/runtime/*_cuda.cc ${CMAKE_SOURCE_DIR}/offload/*_cuda.cc)
if(NOT GLM_CUDA_SOURCES)
  message(STATUS "CUDA backend: no sources")
  return()
endif()
add_library(glmstream_cuda STATIC ${GLM_CUDA_SOURCES})
target_link_libraries(glmstream_cuda PUBLIC glmstream CUDA::cudart CUDA::cublas)
target_compile_definitions(glmstream_cuda PUBLIC GLM_HAVE_CUDA=1)
set_target_properties(glmstream_cuda PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON
                                                CUDA_RUNTIME_LIBRARY Shared)

# The directory-wide options of the main file (-ffp-contract=off, sanitizers) were written for
# g++: nvcc gets -ffp-contract=off through -Xcompiler for the host side, and --fmad=false for the
# device side (no silent a*b+c -> fma; kernels ask for fma explicitly where they want it).
# Sanitizer flags are not passed to nvcc (its -Xcompiler splits them at commas); host code in .cu
# files is thin launchers.
get_target_property(_glm_dir_opts glmstream_cuda COMPILE_OPTIONS)
set(_glm_opts "")
if(_glm_dir_opts)
  foreach(opt ${_glm_dir_opts})
    list(APPEND _glm_opts "$<$<COMPILE_LANGUAGE:CXX>:${opt}>")
    if(NOT opt MATCHES "sanitize|omit-frame-pointer")
      list(APPEND _glm_opts "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=${opt}>")
    endif()
  endforeach()
endif()
set_property(TARGET glmstream_cuda PROPERTY COMPILE_OPTIONS ${_glm_opts})
target_compile_options(glmstream_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:${GLM_WARNINGS}>
    $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false -lineinfo -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>)

foreach(name ${_glm_cuda_tests})
  target_link_libraries(${name} PRIVATE glmstream_cuda)
endforeach()
if(TARGET bench-gpu)
  target_link_libraries(bench-gpu PRIVATE glmstream_cuda)
endif()
# glm-generate's GPU mode: the same source linked with glmstream_cuda (which defines
# GLM_HAVE_CUDA), as glm-generate-gpu. glm-generate runs it for --gpu-mem, so that CPU runs do not
# load the CUDA libraries.
add_executable(glm-generate-gpu ${CMAKE_SOURCE_DIR}/tools/glm_generate.cc)
target_compile_options(glm-generate-gpu PRIVATE ${GLM_WARNINGS})
target_link_libraries(glm-generate-gpu PRIVATE glmstream_cuda ${GFLAGS_LIB})

# GPU tests share one device and some measure its free memory: CTest runs them one at a time
# (ctest -j keeps the CPU suites parallel). gtest_discover_tests names each binary's test list
# <target>_TESTS in the CTest files that run before this one.
set(_glm_lock_file ${CMAKE_BINARY_DIR}/glm_cuda_test_locks.cmake)
set(_glm_lock_text "# Generated by cmake/cuda.cmake: one GPU, one GPU test at a time.\n")
foreach(name ${_glm_cuda_tests})
  string(APPEND _glm_lock_text
         "if(${name}_TESTS)\n  set_tests_properties(\${${name}_TESTS} PROPERTIES RESOURCE_LOCK glm_gpu)\nendif()\n")
endforeach()
file(WRITE ${_glm_lock_file} "${_glm_lock_text}")
set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${_glm_lock_file})
