// CUDA owners, device queries and the failure path of CUDA_CHECK / CUBLAS_CHECK.
#include "runtime/device_cuda.h"

#include <cstdio>
#include <cstdlib>

namespace glm {

void CudaCallFailed(const char* lib, int code, const char* text, const char* stmt, const char* func,
                    const char* file, int line) {
  int dev = -1;
  cudaDeviceProp prop{};
  // Ask without CUDA_CHECK: this is the failure path, and the device may be gone.
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
    prop.name[0] = '?';
    prop.name[1] = '\0';
  }
  std::fprintf(stderr, "%s error %d (%s) in %s at %s:%d on device %d (%s): %s\n", lib, code,
               text ? text : "?", func, file, line, dev, prop.name, stmt);
  std::fflush(stderr);
  std::abort();
}

Status CudaDeviceAvailable() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error for later calls
    return Errorf("no CUDA device: cudaGetDeviceCount: %s", cudaGetErrorString(e));
  }
  if (n == 0) return Errorf("no CUDA device: cudaGetDeviceCount returned 0");
  return Status::Ok();
}

std::string DeviceInfo::ToString() const {
  return StrFormat("%s (device %d, sm_%d%d, %d SMs, %s)", name.c_str(), device, cc_major, cc_minor,
                   multiprocessors, GiBString(total_bytes).c_str());
}

DeviceInfo CurrentDeviceInfo() {
  DeviceInfo d;
  CUDA_CHECK(cudaGetDevice(&d.device));
  cudaDeviceProp p{};
  CUDA_CHECK(cudaGetDeviceProperties(&p, d.device));
  d.name = p.name;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.multiprocessors = p.multiProcessorCount;
  d.total_bytes = p.totalGlobalMem;
  return d;
}

GpuMemInfo GetGpuMemInfo() {
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return GpuMemInfo{.free = free_b, .total = total_b};
}

std::string GiBString(uint64_t bytes) {
  const double b = double(bytes);
  if (bytes >= (1ull << 30)) return StrFormat("%.2f GiB", b / double(1ull << 30));
  if (bytes >= (1ull << 20)) return StrFormat("%.1f MiB", b / double(1ull << 20));
  if (bytes >= (1ull << 10)) return StrFormat("%.1f KiB", b / double(1ull << 10));
  return StrFormat("%llu B", (unsigned long long)bytes);
}

StatusOr<DeviceBuffer> DeviceBuffer::Allocate(uint64_t bytes, const std::string& what) {
  DeviceBuffer b;
  if (bytes == 0) return b;
  const cudaError_t e = cudaMalloc(&b.data_, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();  // out of memory is not sticky; clear it so later checks pass
    b.data_ = nullptr;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    int dev = -1;
    cudaGetDevice(&dev);
    return Errorf("cudaMalloc of %s for %s on device %d failed: %s (free %s of %s)",
                  GiBString(bytes).c_str(), what.c_str(), dev, cudaGetErrorString(e),
                  GiBString(free_b).c_str(), GiBString(total_b).c_str());
  }
  b.size_ = bytes;
  return b;
}

void DeviceBuffer::Reset() {
  if (data_) CUDA_CHECK(cudaFree(data_));
  data_ = nullptr;
  size_ = 0;
}

StatusOr<PinnedBuffer> PinnedBuffer::Allocate(uint64_t bytes, const std::string& what) {
  PinnedBuffer b;
  if (bytes == 0) return b;
  const cudaError_t e = cudaHostAlloc(&b.data_, bytes, cudaHostAllocPortable);
  if (e != cudaSuccess) {
    cudaGetLastError();
    b.data_ = nullptr;
    return Errorf(
        "cudaHostAlloc (pinned host memory) of %s for %s failed: %s; hint: lower "
        "--host-mem, or raise the locked-memory limit (ulimit -l)",
        GiBString(bytes).c_str(), what.c_str(), cudaGetErrorString(e));
  }
  b.size_ = bytes;
  return b;
}

void PinnedBuffer::Reset() {
  if (data_) CUDA_CHECK(cudaFreeHost(data_));
  data_ = nullptr;
  size_ = 0;
}

CudaStream CudaStream::Create() {
  CudaStream s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s.s_, cudaStreamNonBlocking));
  return s;
}

void CudaStream::Reset() {
  if (s_) CUDA_CHECK(cudaStreamDestroy(s_));
  s_ = nullptr;
}

CudaEvent CudaEvent::Create(bool timing) {
  CudaEvent ev;
  CUDA_CHECK(cudaEventCreateWithFlags(&ev.e_, timing ? cudaEventDefault : cudaEventDisableTiming));
  return ev;
}

void CudaEvent::Reset() {
  if (e_) CUDA_CHECK(cudaEventDestroy(e_));
  e_ = nullptr;
}

}  // namespace glm
