// CUDA_CHECK and CUBLAS_CHECK: every CUDA runtime and cuBLAS call of the CUDA backend goes
// through one of them (CONVENTIONS.md, "Errors"), and every kernel launch is followed by
// CUDA_CHECK(cudaGetLastError()). Both come from one template: a failure prints the statement,
// the function, file:line, the current device and the library's error text, then aborts.
// These are for calls whose failure is a bug or a broken device; failures the user can cause
// (out of memory, a budget too small) are returned as a Status by the owners in
// runtime/device_cuda.h.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

namespace glm {

// Prints "<lib> error <code> (<text>) in <func> at <file>:<line> on device <n> (<name>):
// <stmt>" and aborts.
[[noreturn]] void CudaCallFailed(const char* lib, int code, const char* text, const char* stmt,
                                 const char* func, const char* file, int line);

inline const char* CublasStatusText(cublasStatus_t s) { return cublasGetStatusString(s); }

// The one template behind the macros: `ok` is the library's success value and `text` turns a
// result into its message.
template <typename Result, typename TextFn>
inline void CheckCudaResult(Result result, Result ok, TextFn text, const char* lib,
                            const char* stmt, const char* func, const char* file, int line) {
  if (result != ok) CudaCallFailed(lib, int(result), text(result), stmt, func, file, line);
}

}  // namespace glm

#define GLM_CUDA_CHECK_GEN(expr, ok, text, lib) \
  ::glm::CheckCudaResult((expr), (ok), (text), (lib), #expr, __func__, __FILE__, __LINE__)
#define CUDA_CHECK(expr) GLM_CUDA_CHECK_GEN(expr, cudaSuccess, cudaGetErrorString, "CUDA")
#define CUBLAS_CHECK(expr) \
  GLM_CUDA_CHECK_GEN(expr, CUBLAS_STATUS_SUCCESS, ::glm::CublasStatusText, "cuBLAS")
