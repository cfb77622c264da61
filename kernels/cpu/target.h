// GLM_TARGET_PUSH("avx2,fma,...") ... GLM_TARGET_POP(): the code between is compiled for those
// ISA extensions, whatever the build's -march, for the SIMD files that dispatch.cc calls only
// after checking CPUID. GCC takes them as its target pragmas; clang ignores those and takes the
// same targets as a function attribute on every function between.
#pragma once

#define GLM_PRAGMA(...) _Pragma(#__VA_ARGS__)
#ifdef __clang__
#define GLM_TARGET_PUSH(isa) \
  GLM_PRAGMA(clang attribute push(__attribute__((target(isa))), apply_to = function))
#define GLM_TARGET_POP() GLM_PRAGMA(clang attribute pop)
#else
#define GLM_TARGET_PUSH(isa) GLM_PRAGMA(GCC push_options) GLM_PRAGMA(GCC target(isa))
#define GLM_TARGET_POP() GLM_PRAGMA(GCC pop_options)
#endif
