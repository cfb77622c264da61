// Owners of CUDA resources and device queries (CONVENTIONS.md, "Views and owners"): DeviceBuffer,
// PinnedBuffer, CudaStream and CudaEvent are move-only RAII types; every allocation failure is a
// Status that names the buffer, its size in MiB and the device. Views (TensorView, raw pointers)
// into them never own memory; each view's declaration says which owner must outlive it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/check.h"
#include "runtime/check.h"

namespace glm {

// OK when a CUDA device can be used; otherwise the reason, e.g. "no CUDA device:
// cudaGetDeviceCount: CUDA driver version is insufficient for CUDA runtime version". Tests skip
// with this message.
Status CudaDeviceAvailable();

struct DeviceInfo {
  int device = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
  uint64_t total_bytes = 0;
  std::string ToString() const;  // "NVIDIA H100 80GB HBM3 (device 0, sm_90, 132 SMs, 79.1 GiB)"
};
DeviceInfo CurrentDeviceInfo();

// Free and total device memory now (cudaMemGetInfo). Used = total - free counts every process
// on the device, the CUDA context included.
struct GpuMemInfo {
  uint64_t free = 0, total = 0;
  uint64_t used() const { return total - free; }
};
GpuMemInfo GetGpuMemInfo();

// "1.50 GiB", "12.0 MiB", "512 B".
std::string GiBString(uint64_t bytes);

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // cudaMalloc; out of memory is a Status naming `what`, the size and the free memory.
  static StatusOr<DeviceBuffer> Allocate(uint64_t bytes, const std::string& what);
  ~DeviceBuffer() { Reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      std::swap(data_, o.data_);
      std::swap(size_, o.size_);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  uint64_t size() const { return size_; }
  void Reset();

 private:
  void* data_ = nullptr;
  uint64_t size_ = 0;
};

// Page-locked host memory (cudaHostAlloc, portable), so that cudaMemcpyAsync runs at full PCIe
// speed and overlaps compute. Pinning fails past the memlock limit or physical memory: a Status
// with the size and a hint.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  static StatusOr<PinnedBuffer> Allocate(uint64_t bytes, const std::string& what);
  ~PinnedBuffer() { Reset(); }
  PinnedBuffer(PinnedBuffer&& o) noexcept { *this = std::move(o); }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      std::swap(data_, o.data_);
      std::swap(size_, o.size_);
    }
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  char* data() const { return static_cast<char*>(data_); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  uint64_t size() const { return size_; }
  void Reset();

 private:
  void* data_ = nullptr;
  uint64_t size_ = 0;
};

class CudaStream {
 public:
  CudaStream() = default;
  static CudaStream Create();  // non-blocking with respect to the legacy default stream
  ~CudaStream() { Reset(); }
  CudaStream(CudaStream&& o) noexcept { std::swap(s_, o.s_); }
  CudaStream& operator=(CudaStream&& o) noexcept {
    if (this != &o) {
      Reset();
      std::swap(s_, o.s_);
    }
    return *this;
  }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return s_; }
  void Reset();

 private:
  cudaStream_t s_ = nullptr;
};

class CudaEvent {
 public:
  CudaEvent() = default;
  // timing=false: cudaEventDisableTiming (cheaper; for ordering only).
  static CudaEvent Create(bool timing = false);
  ~CudaEvent() { Reset(); }
  CudaEvent(CudaEvent&& o) noexcept { std::swap(e_, o.e_); }
  CudaEvent& operator=(CudaEvent&& o) noexcept {
    if (this != &o) {
      Reset();
      std::swap(e_, o.e_);
    }
    return *this;
  }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return e_; }
  void Reset();

 private:
  cudaEvent_t e_ = nullptr;
};

// Synchronous copies for set-up, tests and tools (never in the decode loop).
template <typename T>
StatusOr<DeviceBuffer> ToDevice(const T* host, size_t n, const std::string& what) {
  ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(n * sizeof(T), what));
  if (n) CUDA_CHECK(cudaMemcpy(b.data(), host, n * sizeof(T), cudaMemcpyHostToDevice));
  return b;
}
template <typename T>
StatusOr<DeviceBuffer> ToDevice(const std::vector<T>& host, const std::string& what) {
  return ToDevice(host.data(), host.size(), what);
}
template <typename T>
std::vector<T> FromDevice(const void* dev, size_t n) {
  std::vector<T> out(n);
  if (n) CUDA_CHECK(cudaMemcpy(out.data(), dev, n * sizeof(T), cudaMemcpyDeviceToHost));
  return out;
}

}  // namespace glm
