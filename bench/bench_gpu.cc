// bench-gpu: GLM-130B on one GPU at full layer shapes, with synthetic weights made in memory (no
// model file, no disk). Measures, in the same run, the bandwidths that bound a decode step
// (host-to-device from pinned memory, device memory through a device-to-device copy), then for
// each --gpu-mem budget: the plan (resident layers, staging slots), prefill time, decode time per
// token, the lower bound max(streamed bytes / H2D, weight bytes / HBM) and the ratio, and the
// device memory in use (cudaMemGetInfo) against the budget. --probe adds the linear layers alone
// at GLM-130B's four shapes (time and achieved bandwidth per kernel path).
//
//   bench-gpu --dtype i4 --gpu_mem 0 --decode 16             # INT4, all 70 layers resident
//   bench-gpu --dtype f16 --gpu_mem 24G,48G,72G --decode 2   # FP16 streamed from pinned memory
//   bench-gpu --model glm.gguf --gpu_mem 40G,0                # a model file (the GPU tier's
//                                                            # file source, io_uring reads)
//
// Synthetic layers share `--distinct` copies of their bytes in host memory (GLM-130B in FP16 is
// 257 GB, more than the host has); every layer is still copied and read on its own.
#if GLM_HAVE_CUDA

#include <gflags/gflags.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <vector>

#include "offload/gpu_store_cuda.h"
#include "offload/layer_source_cuda.h"
#include "quant/format.h"
#include "quant/synthetic.h"
#include "runtime/model_cuda.h"
#include "tools/tool_util.h"

DEFINE_string(model, "",
              "a model file (glm-quantize or glm-synth output) instead of synthetic weights; "
              "--dtype, --group, --layers and --distinct then do not apply");
DEFINE_string(dtype, "i4", "linear weights: f16, i8 or i4");
DEFINE_int32(group, 0, "quantized: 0 = one scale per row (GLM-130B), else scales per G inputs");
DEFINE_int32(layers, 70, "layers (GLM-130B's shapes)");
DEFINE_string(gpu_mem, "0", "comma-separated --gpu-mem budgets, e.g. 24G,48G; 0 = all memory");
DEFINE_int32(prompt, 16, "prompt tokens (one prefill step)");
DEFINE_int32(decode, 8, "decode steps after the prompt");
DEFINE_int32(batch, 1, "sequences decoded together");
DEFINE_int32(distinct, 2, "distinct layer copies in pinned host memory");
DEFINE_int32(max_resident, -1, "cap on resident layers (-1: the planner decides)");
DEFINE_int32(slots, 2, "device staging slots");
DEFINE_bool(probe, false, "also time the linear layers alone at GLM-130B's shapes");
DEFINE_bool(probe_only, false, "time the linear layers alone, then exit");
DEFINE_string(probe_dtypes, "f16,i8,i4", "weight types the probe times");
DEFINE_int32(probe_reps, 20, "timed runs per probed kernel (the median is printed)");
DEFINE_string(probe_shapes, "qkv,dense,h_to_4h,4h_to_h", "layer shapes the probe times");
DEFINE_int32(mma_steps, 0, "tensor-core GEMV tiles per warp step (1 or 2; 0 = the default)");
DEFINE_int32(mma_row_tiles, 0, "tensor-core GEMV 16-row tiles per warp (1 or 2; 0 = the default)");
DEFINE_bool(quiet, false, "only the summary lines");

namespace glm {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median of `reps` timed runs of fn on `stream` (CUDA events), after one warm-up.
template <typename Fn>
double TimeMs(cudaStream_t stream, int reps, Fn fn) {
  fn();
  CudaEvent a = CudaEvent::Create(true), b = CudaEvent::Create(true);
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(a.get(), stream));
    fn();
    CUDA_CHECK(cudaEventRecord(b.get(), stream));
    CUDA_CHECK(cudaEventSynchronize(b.get()));
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, a.get(), b.get()));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Bandwidths {
  double h2d = 0, d2h = 0, hbm = 0;  // bytes per second; hbm counts bytes read plus written
};

Bandwidths MeasureBandwidths(cudaStream_t s) {
  Bandwidths bw;
  const uint64_t host_bytes = 1ull << 30, dev_bytes = 2ull << 30;
  PinnedBuffer host = PinnedBuffer::Allocate(host_bytes, "bandwidth probe (host)").value();
  std::fill(host.data(), host.data() + host_bytes, char(1));
  DeviceBuffer a = DeviceBuffer::Allocate(dev_bytes, "bandwidth probe").value();
  DeviceBuffer b = DeviceBuffer::Allocate(dev_bytes, "bandwidth probe").value();
  CUDA_CHECK(cudaMemsetAsync(a.data(), 1, dev_bytes, s));
  const double h2d = TimeMs(s, 5, [&] {
    CUDA_CHECK(cudaMemcpyAsync(a.data(), host.data(), host_bytes, cudaMemcpyHostToDevice, s));
  });
  const double d2h = TimeMs(s, 5, [&] {
    CUDA_CHECK(cudaMemcpyAsync(host.data(), a.data(), host_bytes, cudaMemcpyDeviceToHost, s));
  });
  const double d2d = TimeMs(s, 10, [&] {
    CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), dev_bytes, cudaMemcpyDeviceToDevice, s));
  });
  bw.h2d = double(host_bytes) / (h2d * 1e-3);
  bw.d2h = double(host_bytes) / (d2h * 1e-3);
  bw.hbm = 2.0 * double(dev_bytes) / (d2d * 1e-3);
  return bw;
}

// Whether `item` is one of the comma-separated `list`.
bool Listed(const std::string& list, const std::string& item) {
  const std::vector<std::string> items = SplitItems(list);
  return std::find(items.begin(), items.end(), item) != items.end();
}

// The linear layers alone at GLM-130B's shapes, one token (decode), each available kernel path.
void ProbeLinears(GpuContext& ctx, const Bandwidths& bw) {
  const ModelConfig cfg = ModelConfig::Glm130B();
  const int64_t C = cfg.hidden, F = cfg.inner;
  const struct {
    const char* name;
    int64_t N, K;
  } shapes[] = {{"qkv", 3 * C, C}, {"dense", C, C}, {"h_to_4h", 2 * F, C}, {"4h_to_h", C, F}};
  DeviceBuffer x = DeviceBuffer::Allocate(8 * F * 2, "probe x").value();
  DeviceBuffer y = DeviceBuffer::Allocate(8 * 2 * F * 2, "probe y").value();
  DeviceBuffer bias = DeviceBuffer::Allocate(2 * F * 2, "probe bias").value();
  DeviceBuffer f32 = DeviceBuffer::Allocate(64 << 20, "probe f32").value();
  CUDA_CHECK(cudaMemset(x.data(), 0x11, x.size()));  // small fp16 values, not zeros
  CUDA_CHECK(cudaMemset(bias.data(), 0x11, bias.size()));
  std::printf("\n== linear layers alone, T=1, against device bandwidth %.0f GB/s\n", bw.hbm / 1e9);
  std::printf("%-8s %-8s %-22s %10s %10s %8s\n", "dtype", "shape", "path", "us", "GB/s", "of bw");
  std::printf("(tensor-core variants: xN tiles per warp step, rN 16-row tiles per warp)\n");
  for (DType dt : {DType::kF16, DType::kI8, DType::kI4}) {
    if (!Listed(FLAGS_probe_dtypes, DTypeName(dt))) continue;
    for (const auto& sh : shapes) {
      if (!Listed(FLAGS_probe_shapes, sh.name)) continue;
      const bool quant = dt != DType::kF16;
      const uint64_t data_bytes =
          quant ? uint64_t(sh.N) * QuantRowBytes(dt, sh.K) : uint64_t(sh.N) * sh.K * 2;
      DeviceBuffer w = DeviceBuffer::Allocate(data_bytes, "probe weight").value();
      DeviceBuffer sc = DeviceBuffer::Allocate(uint64_t(sh.N) * 2, "probe scales").value();
      CUDA_CHECK(cudaMemset(w.data(), 0x35, data_bytes));
      CUDA_CHECK(cudaMemset(sc.data(), 0x11, sc.size()));
      TensorView wv{.dtype = dt,
                    .ndim = 2,
                    .shape = {sh.N, sh.K},
                    .data = w.data(),
                    .scales = quant ? sc.as<Half>() : nullptr};
      // Each path; the tensor cores in every variant (the configured one first).
      struct Variant {
        gpu::QuantGemvPath path;
        gpu::QuantGemvMmaConfig mma;
      };
      const gpu::QuantGemvMmaConfig saved = gpu::GetQuantGemvMmaConfig();
      std::vector<Variant> variants = {{gpu::QuantGemvPath::kAuto, saved}};
      if (quant) {
        variants = {{gpu::QuantGemvPath::kCudaCore, saved}};
        for (int rows : {1, 2}) {
          for (int steps : {1, 2}) {
            variants.push_back(
                {gpu::QuantGemvPath::kTensorCore, {.steps = steps, .row_tiles = rows}});
          }
        }
      }
      for (const Variant& v : variants) {
        gpu::SetQuantGemvMmaConfig(v.mma);
        const gpu::LinearContext lc{.cublas = ctx.cublas(),
                                    .stream = ctx.stream(),
                                    .f32 = f32.as<float>(),
                                    .f32_elems = (64 << 20) / 4,
                                    .gemv_path = v.path};
        const double ms = TimeMs(ctx.stream(), std::max(1, FLAGS_probe_reps), [&] {
          gpu::Linear(x.as<Half>(), 1, wv, bias.as<Half>(), y.as<Half>(), lc);
        });
        const double gbs = double(data_bytes) / (ms * 1e-3) / 1e9;
        std::string name = !quant ? "cublas" : gpu::QuantGemvPathName(v.path);
        if (v.path == gpu::QuantGemvPath::kTensorCore) {
          name += StrFormat(" x%d r%d", v.mma.steps, v.mma.row_tiles);
        }
        std::printf("%-8s %-8s %-22s %10.1f %10.0f %7.0f%%\n", DTypeName(dt), sh.name, name.c_str(),
                    ms * 1e3, gbs, 100.0 * gbs * 1e9 / bw.hbm);
      }
      gpu::SetQuantGemvMmaConfig(saved);
    }
  }
}

int Run() {
  const char* tool = "bench-gpu";
  DType dtype;
  if (FLAGS_dtype == "f16") {
    dtype = DType::kF16;
  } else if (FLAGS_dtype == "i8") {
    dtype = DType::kI8;
  } else if (FLAGS_dtype == "i4") {
    dtype = DType::kI4;
  } else {
    Die(tool, Errorf("--dtype '%s': expected f16, i8 or i4", FLAGS_dtype.c_str()));
  }
  auto budgets_or = ParseByteList(FLAGS_gpu_mem);
  if (!budgets_or.ok()) Die(tool, budgets_or.status().WithContext("--gpu_mem"));
  const std::vector<uint64_t> budgets = *budgets_or;
  // The model file, opened once: each budget's store borrows it, as it borrows synthetic layers.
  std::unique_ptr<LayerSource> file;
  if (!FLAGS_model.empty()) {
    auto f = OpenFileLayerSource(FLAGS_model);
    if (!f.ok()) Die(tool, f.status().WithContext("--model"));
    file = std::move(f).value();
  }
  auto cfg_or = file ? StatusOr<ModelConfig>(file->config())
                     : SyntheticPreset(StrFormat("glm130b-L%d", FLAGS_layers));
  if (!cfg_or.ok()) Die(tool, cfg_or.status());
  const ModelConfig cfg = *cfg_or;
  const int B = std::max(1, FLAGS_batch), P = std::max(2, FLAGS_prompt);
  const int64_t capacity = P + FLAGS_decode + 1;
  const std::string weights =
      file ? "model file " + FLAGS_model
           : StrFormat("synthetic %s weights (group %d)", DTypeName(dtype), FLAGS_group);
  const char* label = file ? "model" : DTypeName(dtype);
  std::printf("bench-gpu: %s, %s, prompt %d, decode %d, batch %d, budgets %s\n",
              cfg.ToString().c_str(), weights.c_str(), P, FLAGS_decode, B, FLAGS_gpu_mem.c_str());
  if (capacity > cfg.max_seq) {
    Die(tool, Errorf("--prompt %d and --decode %d exceed the model's %d positions", P, FLAGS_decode,
                     cfg.max_seq));
  }

  auto ctx_or = GpuContext::Create(cfg);
  if (!ctx_or.ok()) Die(tool, ctx_or.status(), "bench-gpu needs a CUDA device");
  GpuContext& ctx = **ctx_or;
  std::printf("device: %s; context %s\n", ctx.device().ToString().c_str(),
              GiBString(ctx.context_bytes()).c_str());
  const Bandwidths bw = MeasureBandwidths(ctx.stream());
  std::printf(
      "bandwidth: host-to-device %.1f GB/s, device-to-host %.1f GB/s, device memory "
      "%.0f GB/s (copy, read + write)\n",
      bw.h2d / 1e9, bw.d2h / 1e9, bw.hbm / 1e9);
  {
    gpu::QuantGemvMmaConfig mma = gpu::GetQuantGemvMmaConfig();
    if (FLAGS_mma_steps) mma.steps = FLAGS_mma_steps;
    if (FLAGS_mma_row_tiles) mma.row_tiles = FLAGS_mma_row_tiles;
    if (mma.steps < 1 || mma.steps > 2 || mma.row_tiles < 1 || mma.row_tiles > 2) {
      Die(tool,
          Errorf("--mma_steps %d / --mma_row_tiles %d: each is 1 or 2", mma.steps, mma.row_tiles));
    }
    gpu::SetQuantGemvMmaConfig(mma);
  }
  if (FLAGS_probe || FLAGS_probe_only) ProbeLinears(ctx, bw);
  if (FLAGS_probe_only) return 0;
  std::printf("tensor-core GEMV: %s\n", gpu::GetQuantGemvMmaConfig().ToString().c_str());

  double t0 = Now();
  std::unique_ptr<PackedLayerSource> src;
  if (!file) {
    auto src_or =
        PackedLayerSource::Synthetic(cfg, {.format = {.dtype = dtype, .group_size = FLAGS_group},
                                           .distinct_layers = FLAGS_distinct,
                                           .seed = 1,
                                           .pinned = true});
    if (!src_or.ok()) Die(tool, src_or.status());
    src = std::move(src_or).value();
    std::printf("synthetic weights: %s, %s pinned, made in %.1f s\n", src->Describe().c_str(),
                GiBString(src->HostBytes()).c_str(), Now() - t0);
  }

  const uint64_t kv_bytes = uint64_t(B) * GpuKvCache::Bytes(cfg, capacity);
  const int64_t max_tokens = int64_t(B) * P;
  const uint64_t act_bytes = GpuActivations::Bytes(cfg, max_tokens, B);
  int failures = 0;
  for (uint64_t budget : budgets) {
    std::printf("\n== %s, --gpu-mem %s\n", label,
                budget ? GiBString(budget).c_str() : "0 (all memory)");
    // The store takes the source; a fresh view of the same file or pinned bytes per budget.
    struct Borrowed : LayerSource {
      const LayerSource* s;
      const ModelConfig& config() const override { return s->config(); }
      uint64_t ExtentBytes(int e) const override { return s->ExtentBytes(e); }
      Status Read(int e, uint64_t o, uint64_t n, void* d) const override {
        return s->Read(e, o, n, d);
      }
      Status BindGlobals(const void* b, GlobalWeights* g) const override {
        return s->BindGlobals(b, g);
      }
      Status BindLayer(int l, const void* b, LayerWeights* w) const override {
        return s->BindLayer(l, b, w);
      }
      const void* Pinned(int e) const override { return s->Pinned(e); }
      std::string Describe() const override { return s->Describe(); }
    };
    auto borrowed = std::make_unique<Borrowed>();
    borrowed->s = file ? file.get() : src.get();
    t0 = Now();
    GpuStoreOptions so{.gpu_mem_bytes = budget,
                       .staging_slots = FLAGS_slots,
                       .max_resident_layers = FLAGS_max_resident,
                       .context_bytes = ctx.context_bytes(),
                       .workspace_bytes = ctx.owned_bytes(),
                       .kv_cache_bytes = kv_bytes,
                       .activation_bytes = act_bytes,
                       .verbose = !FLAGS_quiet};
    auto store_or = GpuWeightStore::Open(std::move(borrowed), so, ctx.stream());
    if (!store_or.ok()) {
      std::printf("RESULT %s budget=%s: plan refused: %s\n", label, GiBString(budget).c_str(),
                  store_or.status().message().c_str());
      ++failures;
      continue;
    }
    GpuWeightStore& store = **store_or;
    const GpuPlan& plan = store.plan();
    std::printf("opened in %.1f s (uploads of %d resident layers)\n", Now() - t0, plan.resident);
    std::vector<GpuKvCache> caches;
    for (int b = 0; b < B; ++b) caches.push_back(GpuKvCache::Allocate(cfg, capacity).value());
    GpuActivations act = GpuActivations::Allocate(cfg, max_tokens, B).value();
    PinnedBuffer logits = PinnedBuffer::Allocate(uint64_t(B) * cfg.vocab * 2, "logits").value();

    // Prompt: P ids ending in [gMASK] [sop]; then greedy-free decode (token ids do not matter,
    // as long as they are in the vocabulary).
    std::vector<std::vector<int32_t>> ids(B), pos(B);
    for (int b = 0; b < B; ++b) {
      for (int i = 0; i < P; ++i) {
        ids[b].push_back(i == P - 2   ? cfg.tokens.gmask
                         : i == P - 1 ? cfg.tokens.sop
                                      : (1000 + 17 * i + b) % cfg.tokens.mask);
        pos[b].push_back(i);
      }
    }
    auto step = [&](bool prefill, int d) {
      std::vector<GpuSeqStep> steps;
      std::vector<int32_t> tok(B), tpos(B);
      for (int b = 0; b < B; ++b) {
        tok[b] = (2000 + d) % cfg.tokens.mask;
        tpos[b] = P + d;
        steps.push_back(prefill ? GpuSeqStep{.kv = &caches[b],
                                             .ids = ids[b],
                                             .positions = pos[b],
                                             .prefix_len = P - 1}
                                : GpuSeqStep{.kv = &caches[b],
                                             .ids = std::span(&tok[b], 1),
                                             .positions = std::span(&tpos[b], 1),
                                             .prefix_len = P - 1});
      }
      Status st = ForwardBatchCuda(store, ctx, steps, act, logits.as<Half>());
      if (!st.ok()) Die(tool, st);
    };
    t0 = Now();
    step(true, 0);
    const double prefill_s = Now() - t0;
    std::vector<double> times;
    for (int d = 0; d < FLAGS_decode; ++d) {
      const double s0 = Now();
      step(false, d);
      times.push_back(Now() - s0);
    }
    const GpuMemInfo mem = GetGpuMemInfo();
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    // The median over the decode steps (the first one includes loading the decode kernels).
    const double median = sorted.empty() ? 0 : sorted[sorted.size() / 2];
    const uint64_t kv_read = uint64_t(B) * 2ull * cfg.num_layers * capacity * cfg.hidden * 2;
    const double bound = StepLowerBoundSeconds(plan, bw.h2d, bw.hbm, kv_read);
    const bool within = budget == 0 || mem.used() <= budget;
    if (!within) ++failures;
    std::printf(
        "prefill %d tokens: %.3f s; decode per step: median %.2f ms, first %.2f ms, "
        "min %.2f ms\n",
        P, prefill_s, median * 1e3, times.empty() ? 0 : times[0] * 1e3,
        sorted.empty() ? 0 : sorted[0] * 1e3);
    std::printf("bound %.2f ms (H2D %.2f ms for %s, device memory %.2f ms for %s)\n", bound * 1e3,
                double(plan.streamed_bytes) / bw.h2d * 1e3, GiBString(plan.streamed_bytes).c_str(),
                double(plan.weight_bytes + kv_read) / bw.hbm * 1e3,
                GiBString(plan.weight_bytes + kv_read).c_str());
    const GpuStoreStats st = store.stats();
    std::printf("streamed %s in %llu copies; Acquire waited %.2f s on the host\n",
                GiBString(st.h2d_bytes).c_str(), (unsigned long long)st.copies, st.acquire_wait_s);
    std::printf(
        "RESULT %s budget=%s resident=%d/%d slots=%d decode_ms=%.2f bound_ms=%.2f "
        "ratio=%.2f gpu_used=%s %s\n",
        label, budget ? GiBString(budget).c_str() : "all", plan.resident, cfg.num_layers,
        plan.slots, median * 1e3, bound * 1e3, bound > 0 ? median / bound : 0,
        GiBString(mem.used()).c_str(), within ? "within-budget" : "OVER-BUDGET");
  }
  return failures ? 1 : 0;
}

}  // namespace
}  // namespace glm

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "bench-gpu [--model FILE | --dtype f16|i8|i4] --gpu_mem 0|24G,48G [--decode N --probe]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  return glm::Run();
}

#else  // GLM_HAVE_CUDA

#include <cstdio>

int main() {
  std::fprintf(stderr, "bench-gpu: built without CUDA (configure with -DGLM_CUDA=ON)\n");
  return 77;
}

#endif  // GLM_HAVE_CUDA
