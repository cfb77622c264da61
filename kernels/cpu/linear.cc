// Linear layer y = x·Wᵀ + b for fp16 and quantized weights (spec §1.3, §3): fp32 accumulation
// and a single fp16 rounding after the bias, as PyTorch's fused addmm. Weight-stationary: each
// weight row is converted once and dotted with every token, so a decode step reads the weights
// exactly once. This scalar kernel defines the summation order every SIMD path reproduces.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/half_table.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/linear_common.h"
#include "kernels/cpu/simd.h"
#include "quant/format.h"
#include "runtime/check.h"
#include "runtime/parallel.h"

namespace glm {
namespace {

// The reference order (linear_common.h): 16 lane sums, their fold, then the tail in order.
inline float Dot(const float* a, const float* b, int64_t n) {
  float acc[kLinearLanes] = {};
  int64_t k = 0;
  for (; k + kLinearLanes <= n; k += kLinearLanes) {
    for (int j = 0; j < kLinearLanes; ++j) acc[j] += a[k + j] * b[k + j];
  }
  float s = ReduceLanes(acc);
  for (; k < n; ++k) s += a[k] * b[k];
  return s;
}

}  // namespace

void LinearScalar(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
                  float* scratch) {
  CheckLinearWeight(w);
  const int64_t N = w.rows(), K = w.cols();
  const float* tab = HalfTable();
  const bool quantized = w.dtype != DType::kF16;
  for (int64_t t = 0; t < T; ++t) HalfToFloatRow(x + t * K, K, scratch + t * K);
  const float* xf = scratch;
  ThreadPool::Global().ParallelFor(N, 16, [&](int64_t n0, int64_t n1) {
    thread_local std::vector<float> wrow;
    if (int64_t(wrow.size()) < K) wrow.resize(K);  // grows once per thread, then reused
    for (int64_t n = n0; n < n1; ++n) {
      DequantizeRow(w, n, wrow.data());  // fp16 or the reference dequantization (quant/format.h)
      const float b = bias ? tab[bias[n].bits] : 0.f;
      for (int64_t t = 0; t < T; ++t) {
        const float acc = Dot(xf + t * K, wrow.data(), K);
        // The quantized reference (W8A16Linear) adds the bias as a separate fp16 op (spec §3).
        out[t * N + n] = FloatToHalf(quantized ? RoundHalf(acc) + b : acc + b);
      }
    }
  });
}

namespace {
// The value of setting `name` ("12x" in "NAME=12x"): a count of 0 or more; `expected` names it
// in the error.
StatusOr<int64_t> ParseCount(const char* name, const char* text, const char* expected) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v < 0 || errno != 0) {
    return Errorf("%s=%s: expected %s", name, text, expected);
  }
  return int64_t(v);
}
// A byte count, 0 turning the prefetch off.
StatusOr<int64_t> ParseByteCount(const char* name, const char* text) {
  return ParseCount(name, text, "a byte count (0 turns the prefetch off)");
}

StatusOr<bool> ParseOnOff(const char* name, const char* text) {
  if ((text[0] != '0' && text[0] != '1') || text[1] != '\0') {
    return Errorf("%s=%s: expected 0 or 1", name, text);
  }
  return text[0] == '1';
}

StatusOr<XHalf> ParseXHalf(const char* name, const char* text) {
  for (XHalf x : {XHalf::kOff, XHalf::kOn, XHalf::kAuto}) {
    if (std::strcmp(text, XHalfName(x)) == 0) return x;
  }
  return Errorf("%s=%s: expected 0, 1 or auto", name, text);
}

// Applies NAME=value (a name of the environment's) to s.
Status ApplySetting(const std::string& name, const char* value, DecodeTileSettings* s) {
  if (name == "GLM_CPU_PREFETCH_ROW_BYTES") {
    ASSIGN_OR_RETURN(s->row_bytes, ParseByteCount(name.c_str(), value));
  } else if (name == "GLM_CPU_PREFETCH_AHEAD") {
    ASSIGN_OR_RETURN(s->ahead_f16, ParseByteCount(name.c_str(), value));
    s->ahead_quantized = s->ahead_f16;
    s->ahead_f16_tokens3 = s->ahead_f16;
  } else if (name == "GLM_CPU_PREFETCH_AHEAD_TOKENS3") {
    ASSIGN_OR_RETURN(s->ahead_f16_tokens3, ParseByteCount(name.c_str(), value));
  } else if (name == "GLM_CPU_CHUNK_TOKENS") {
    ASSIGN_OR_RETURN(s->chunk_tokens, ParseCount(name.c_str(), value, "a token count (0: never)"));
  } else if (name == "GLM_CPU_F16_ROW_STREAMS") {
    ASSIGN_OR_RETURN(s->f16_row_streams, ParseOnOff(name.c_str(), value));
  } else if (name == "GLM_CPU_DECODE_X_HALF") {
    ASSIGN_OR_RETURN(s->x_half, ParseXHalf(name.c_str(), value));
  } else if (name == "GLM_CPU_PREFETCH_NEXT_L1") {
    ASSIGN_OR_RETURN(s->next_tile_l1, ParseOnOff(name.c_str(), value));
  } else if (name == "GLM_CPU_PANEL_PREFETCH") {
    ASSIGN_OR_RETURN(s->panel_prefetch, ParseOnOff(name.c_str(), value));
  } else {
    return Errorf(
        "%s: not a decode tile setting (GLM_CPU_PREFETCH_ROW_BYTES, "
        "GLM_CPU_PREFETCH_AHEAD, GLM_CPU_PREFETCH_AHEAD_TOKENS3, GLM_CPU_PREFETCH_NEXT_L1, "
        "GLM_CPU_F16_ROW_STREAMS, GLM_CPU_DECODE_X_HALF, GLM_CPU_CHUNK_TOKENS, "
        "GLM_CPU_PANEL_PREFETCH)",
        name.c_str());
  }
  return Status::Ok();
}
}  // namespace

DecodePrefetchDefaults DecodePrefetchDefaultsFor(const CpuIdentity& cpu) {
  if (cpu.vendor == CpuIdentity::kAmd && cpu.family == 0x1a) {
    return {"AMD family 1Ah", kPrefetchEveryRow, 0, 0, true, XHalf::kAuto, true, 4096};
  }
  if (cpu.vendor == CpuIdentity::kIntel && cpu.avx512fp16) {
    return {"Intel with AVX512-FP16", 3072, 512, 384, false, XHalf::kAuto, false, 512};
  }
  return {"other CPUs", 3072, 512, 0, false, XHalf::kAuto, false, 512};
}

namespace {
// This CPU's defaults with the environment's overrides (a malformed one is a fatal error naming
// the variable), resolved once: LinearWeight::From reads them for every Linear call.
DecodeTileSettings& Settings() {
  static DecodeTileSettings s = [] {
    const DecodePrefetchDefaults d = DecodePrefetchDefaultsFor(IdentifyCpu());
    DecodeTileSettings v{d.row_bytes, d.ahead_f16,    d.ahead_quantized,  d.f16_row_streams,
                         d.x_half,    d.next_tile_l1, d.ahead_f16_tokens3};
    for (const char* name :
         {"GLM_CPU_PREFETCH_ROW_BYTES", "GLM_CPU_PREFETCH_AHEAD", "GLM_CPU_PREFETCH_AHEAD_TOKENS3",
          "GLM_CPU_PREFETCH_NEXT_L1", "GLM_CPU_F16_ROW_STREAMS", "GLM_CPU_DECODE_X_HALF",
          "GLM_CPU_CHUNK_TOKENS", "GLM_CPU_PANEL_PREFETCH"}) {
      const char* env = std::getenv(name);
      if (env == nullptr || *env == '\0') continue;
      const Status st = ApplySetting(name, env, &v);
      GLM_CHECK_MSG(st.ok(), "%s", st.message().c_str());
    }
    return v;
  }();
  return s;
}
}  // namespace

int64_t PrefetchRowBytes() { return Settings().row_bytes; }
int64_t PrefetchAheadBytes(bool quantized) {
  return quantized ? Settings().ahead_quantized : Settings().ahead_f16;
}
int64_t PrefetchAheadBytesTokens3() { return Settings().ahead_f16_tokens3; }
int64_t ChunkTokens() { return Settings().chunk_tokens; }
bool PanelPrefetch() { return Settings().panel_prefetch; }
bool F16RowStreams() { return Settings().f16_row_streams; }
XHalf DecodeXHalf() { return Settings().x_half; }
bool PrefetchNextL1() { return Settings().next_tile_l1; }

const char* XHalfName(XHalf x) {
  switch (x) {
    case XHalf::kOff:
      return "0";
    case XHalf::kOn:
      return "1";
    case XHalf::kAuto:
      return "auto";
  }
  return "?";
}

namespace {
// The first slot a kind may take: its hash mixed (the splitmix64 finalizer), since a kind's low
// bits alone would put shapes that are multiples of a power of two in one slot.
int FirstSlot(uint64_t kind) {
  kind ^= kind >> 30;
  kind *= 0xbf58476d1ce4e5b9ull;
  kind ^= kind >> 27;
  kind *= 0x94d049bb133111ebull;
  kind ^= kind >> 31;
  return int(kind % XHalfChooser::kSlots);
}
}  // namespace

XHalfChooser::Slot* XHalfChooser::Find(uint64_t kind) {
  const int first = FirstSlot(kind);
  for (int w = 0; w < kWays; ++w) {
    Slot& s = slots_[(first + w) % kSlots];
    if (s.used && s.kind == kind) return &s;
  }
  return nullptr;
}

XHalfChooser::Slot& XHalfChooser::SlotOf(uint64_t kind) {
  if (Slot* s = Find(kind)) return *s;
  const int first = FirstSlot(kind);
  Slot* take = &slots_[first];  // a free slot, else the least recently used
  for (int w = 0; w < kWays; ++w) {
    Slot& s = slots_[(first + w) % kSlots];
    if (!s.used) {
      take = &s;
      break;
    }
    if (s.last_use < take->last_use) take = &s;
  }
  *take = Slot{};
  take->kind = kind;
  take->used = true;
  return *take;
}

bool XHalfChooser::Choose(uint64_t kind) {
  std::lock_guard<std::mutex> lock(mu_);
  Slot& s = SlotOf(kind);
  s.last_use = ++clock_;
  const uint32_t call = s.calls++;
  if (s.samples[0] < kWarmup || s.samples[1] < kWarmup) {
    // The variant with fewer times, in turn while they are even. (A time is recorded when its
    // call ends: calls made meanwhile from other threads may take the same variant, which only
    // lengthens the warm-up.)
    if (s.samples[0] != s.samples[1]) return s.samples[1] < s.samples[0];
    return call % 2 == 1;
  }
  const bool best = s.mean[1] < s.mean[0];
  return call % kExplore == 0 ? !best : best;
}

void XHalfChooser::Record(uint64_t kind, bool half, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  Slot* s = Find(kind);
  if (s == nullptr) return;  // the slot went to another kind meanwhile
  double& m = s->mean[half];
  int& n = s->samples[half];
  const bool warm = s->samples[0] >= kWarmup && s->samples[1] >= kWarmup;
  const bool explored = warm && half != (s->mean[1] < s->mean[0]);
  if (n == 0) {
    m = seconds;
  } else if (explored) {
    // The other variant's time, taken every kExplore-th call: it stands for that variant now.
    // Its older times came before the host last moved, while the chosen variant's average has
    // followed every call; weighing them in, the choice lagged the host by seconds.
    m = std::min(seconds, 2 * m);
  } else {
    m += kAlpha * (std::min(seconds, 2 * m) - m);
  }
  ++n;
}

void XHalfChooser::Averages(uint64_t kind, double* fp32, double* fp16) {
  std::lock_guard<std::mutex> lock(mu_);
  const Slot* s = Find(kind);
  *fp32 = s ? s->mean[0] : 0;
  *fp16 = s ? s->mean[1] : 0;
}

void XHalfChooser::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  for (Slot& s : slots_) s = Slot{};
  clock_ = 0;
}

XHalfChooser& GlobalXHalfChooser() {
  static XHalfChooser* c = new XHalfChooser;  // never destroyed: kernels may run at exit
  return *c;
}

namespace {
int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The kind of a decode call: its path, its weight's format and geometry, its tokens.
uint64_t DecodeKind(const LinearWeight& w, CpuPath path, int64_t T) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the fields
  for (uint64_t v : {uint64_t(path), uint64_t(w.format), uint64_t(w.N), uint64_t(w.K),
                     uint64_t(w.groups), uint64_t(T)}) {
    h = (h ^ v) * 1099511628211ull;
  }
  return h;
}
}  // namespace

XHalfCall::XHalfCall(const LinearWeight& w, CpuPath path, int64_t T) {
  if (w.x_half != XHalf::kAuto) {
    half = w.x_half == XHalf::kOn;
    return;
  }
  kind_ = DecodeKind(w, path, T);
  half = GlobalXHalfChooser().Choose(kind_);
  start_ns_ = NowNs();
}

XHalfCall::~XHalfCall() {
  if (start_ns_ < 0) return;
  GlobalXHalfChooser().Record(kind_, half, double(NowNs() - start_ns_) * 1e-9);
}

DecodeTileSettings CurrentDecodeTileSettings() { return Settings(); }
void SetDecodeTileSettings(const DecodeTileSettings& s) { Settings() = s; }

StatusOr<DecodeTileSettings> ParseDecodeTileSettings(const std::string& spec,
                                                     DecodeTileSettings base) {
  size_t b = spec.find_first_not_of(' ');
  if (b == std::string::npos || spec.substr(b, spec.find_last_not_of(' ') - b + 1) == "default") {
    return base;
  }
  while (b != std::string::npos) {
    const size_t e = std::min(spec.find(' ', b), spec.size());
    const std::string item = spec.substr(b, e - b);
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      return Errorf("'%s': expected NAME=value (or 'default')", item.c_str());
    }
    RETURN_IF_ERROR(ApplySetting(item.substr(0, eq), item.c_str() + eq + 1, &base));
    b = spec.find_first_not_of(' ', e);
  }
  return base;
}

}  // namespace glm
