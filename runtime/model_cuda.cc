// The forward loop on the GPU (spec §1.2-1.3): runtime/model.cc's loop with device buffers.
#include "runtime/model_cuda.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/kernels.h"

namespace glm {
namespace {

constexpr uint64_t kAlign = 256;
constexpr int64_t kLinearScratchFloats = 16 << 20;   // 64 MiB: column blocks of fp16 linears
constexpr int64_t kDequantScratchHalves = 16 << 20;  // 32 MiB: row blocks of quantized weights

uint64_t Al(uint64_t b) { return (b + kAlign - 1) / kAlign * kAlign; }
// cudaMalloc's page for large allocations: sizes reported to the planner are rounded to it.
uint64_t GpuRoundUp(uint64_t b) { return (b + (2ull << 20) - 1) / (2ull << 20) * (2ull << 20); }

// Sizes of the activation buffer's parts, in the order they are carved.
struct ActLayout {
  int64_t T, rows, C, F, HD, V;
  int64_t f32_elems, deq_elems;
  uint64_t Total() const {
    return 6 * Al(uint64_t(T * C) * 2) + Al(uint64_t(T * 3 * HD) * 2) + Al(uint64_t(T * HD) * 2) +
           Al(uint64_t(T * 2 * F) * 2) + Al(uint64_t(T * F) * 2) + Al(uint64_t(rows * V) * 2) +
           2 * Al(uint64_t(T) * 4) + Al(uint64_t(f32_elems) * 4) + Al(uint64_t(deq_elems) * 2);
  }
};

ActLayout LayoutActivations(const ModelConfig& cfg, int64_t T, int64_t rows) {
  ActLayout a{T,         rows, cfg.hidden, cfg.inner, int64_t(cfg.num_heads) * cfg.head_dim,
              cfg.vocab, 0,    0};
  // The fp32 scratch holds column blocks of the biased fp16 linears (N up to max(3HD, C, 2F)).
  const int64_t max_n = std::max({3 * a.HD, a.C, 2 * a.F});
  a.f32_elems = std::min(T * max_n, std::max(T * 64, kLinearScratchFloats));
  // Quantized prefill (T > 8) dequantizes row blocks of up to K = max(C, F, HD) columns.
  const int64_t max_k = std::max({a.C, a.F, a.HD});
  a.deq_elems = T > gpu::kMaxGemvTokens
                    ? std::min(max_n * max_k, std::max(max_k * 64, kDequantScratchHalves))
                    : 0;
  return a;
}

}  // namespace

// ---- GpuContext ----

StatusOr<std::unique_ptr<GpuContext>> GpuContext::Create(const ModelConfig& cfg,
                                                         const GpuContextOptions& opts) {
  RETURN_IF_ERROR(CudaDeviceAvailable());
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  if (opts.device < 0 || opts.device >= count) {
    return Errorf("CUDA device %d does not exist (%d present)", opts.device, count);
  }
  std::unique_ptr<GpuContext> c(new GpuContext());
  CUDA_CHECK(cudaSetDevice(opts.device));
  CUDA_CHECK(cudaFree(nullptr));  // creates the context now, so that it can be measured
  c->info_ = CurrentDeviceInfo();
  c->exact_fp32_ = opts.exact_fp32;
  c->stream_ = CudaStream::Create();
  CUBLAS_CHECK(cublasCreate(&c->cublas_));
  CUBLAS_CHECK(cublasSetStream(c->cublas_, c->stream_.get()));
  // fp32 accumulation all the way: no fp16 partial sums in split-K reductions (spec §1.3).
  CUBLAS_CHECK(cublasSetMathMode(
      c->cublas_,
      cublasMath_t(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
  c->context_bytes_ = GetGpuMemInfo().used();

  ASSIGN_OR_RETURN(c->workspace_, DeviceBuffer::Allocate(opts.workspace_bytes, "cuBLAS workspace"));
  // After cublasSetStream, which resets the workspace to cuBLAS's own pool.
  CUBLAS_CHECK(cublasSetWorkspace(c->cublas_, c->workspace_.data(), opts.workspace_bytes));

  // The reference's fp16 rotary tables, built by the CPU code: identical bits.
  const RotaryTable table = RotaryTable::Build(cfg.head_dim, cfg.max_seq);
  const uint64_t tab_bytes = table.cos.size() * sizeof(Half);
  ASSIGN_OR_RETURN(c->rope_buf_, DeviceBuffer::Allocate(2 * tab_bytes, "rotary tables"));
  CUDA_CHECK(cudaMemcpy(c->rope_buf_.data(), table.cos.data(), tab_bytes, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(c->rope_buf_.as<char>() + tab_bytes, table.sin.data(), tab_bytes,
                        cudaMemcpyHostToDevice));
  c->rope_ = gpu::RotaryTableView{
      .cos = c->rope_buf_.as<Half>(),
      .sin = reinterpret_cast<const Half*>(c->rope_buf_.as<char>() + tab_bytes),
      .head_dim = cfg.head_dim,
      .max_seq = cfg.max_seq};
  const std::vector<Half> gelu = gpu::BuildGeluTable();
  ASSIGN_OR_RETURN(c->gelu_, DeviceBuffer::Allocate(gelu.size() * sizeof(Half), "GELU table"));
  CUDA_CHECK(
      cudaMemcpy(c->gelu_.data(), gelu.data(), gelu.size() * sizeof(Half), cudaMemcpyHostToDevice));
  c->owned_bytes_ = GpuRoundUp(opts.workspace_bytes) + GpuRoundUp(2 * tab_bytes) +
                    GpuRoundUp(gelu.size() * sizeof(Half));
  return c;
}

GpuContext::~GpuContext() {
  if (stream_.get()) CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  if (cublas_) CUBLAS_CHECK(cublasDestroy(cublas_));
}

// ---- KV cache and activations ----

uint64_t GpuKvCache::Bytes(const ModelConfig& cfg, int64_t capacity) {
  return 2 * GpuRoundUp(uint64_t(cfg.num_layers) * capacity * cfg.num_heads * cfg.head_dim * 2);
}

StatusOr<GpuKvCache> GpuKvCache::Allocate(const ModelConfig& cfg, int64_t capacity) {
  GpuKvCache kv;
  kv.capacity = capacity;
  const uint64_t bytes = uint64_t(cfg.num_layers) * capacity * cfg.num_heads * cfg.head_dim * 2;
  ASSIGN_OR_RETURN(kv.k, DeviceBuffer::Allocate(bytes, "KV cache (keys)"));
  ASSIGN_OR_RETURN(kv.v, DeviceBuffer::Allocate(bytes, "KV cache (values)"));
  return kv;
}

uint64_t GpuActivations::Bytes(const ModelConfig& cfg, int64_t max_tokens, int64_t max_logit_rows) {
  return GpuRoundUp(LayoutActivations(cfg, max_tokens, max_logit_rows).Total());
}

StatusOr<GpuActivations> GpuActivations::Allocate(const ModelConfig& cfg, int64_t max_tokens,
                                                  int64_t max_logit_rows) {
  GLM_CHECK(max_tokens > 0 && max_logit_rows > 0);
  const ActLayout L = LayoutActivations(cfg, max_tokens, max_logit_rows);
  GpuActivations a;
  a.max_tokens = max_tokens;
  a.max_logit_rows = max_logit_rows;
  ASSIGN_OR_RETURN(a.buf, DeviceBuffer::Allocate(L.Total(), "activations"));
  char* p = a.buf.as<char>();
  auto take = [&](uint64_t bytes) {
    char* r = p;
    p += Al(bytes);
    return r;
  };
  const int64_t T = max_tokens;
  for (Half** v : {&a.x, &a.y, &a.attn, &a.h, &a.z, &a.down}) {
    *v = reinterpret_cast<Half*>(take(uint64_t(T * L.C) * 2));
  }
  a.qkv = reinterpret_cast<Half*>(take(uint64_t(T * 3 * L.HD) * 2));
  a.ctx = reinterpret_cast<Half*>(take(uint64_t(T * L.HD) * 2));
  a.up = reinterpret_cast<Half*>(take(uint64_t(T * 2 * L.F) * 2));
  a.gated = reinterpret_cast<Half*>(take(uint64_t(T * L.F) * 2));
  a.logits = reinterpret_cast<Half*>(take(uint64_t(max_logit_rows * L.V) * 2));
  a.ids = reinterpret_cast<int32_t*>(take(uint64_t(T) * 4));
  a.positions = reinterpret_cast<int32_t*>(take(uint64_t(T) * 4));
  a.f32 = reinterpret_cast<float*>(take(uint64_t(L.f32_elems) * 4));
  a.f32_elems = L.f32_elems;
  a.deq = L.deq_elems ? reinterpret_cast<Half*>(take(uint64_t(L.deq_elems) * 2)) : nullptr;
  a.deq_elems = L.deq_elems;
  GLM_CHECK(uint64_t(p - a.buf.as<char>()) <= L.Total());
  ASSIGN_OR_RETURN(a.host_ids, PinnedBuffer::Allocate(uint64_t(2 * T) * 4, "token ids staging"));
  return a;
}

// ---- the forward pass ----

namespace {

// Copies each tapped activation to the host and hands it to the caller's TapFn.
class Tapper {
 public:
  Tapper(const TapFn* fn, cudaStream_t s, int64_t rows) : fn_(fn), s_(s), rows_(rows) {}
  void operator()(const std::string& name, const Half* dev, int64_t cols) {
    if (!fn_) return;
    host_.resize(size_t(rows_ * cols));
    CUDA_CHECK(cudaMemcpyAsync(host_.data(), dev, host_.size() * sizeof(Half),
                               cudaMemcpyDeviceToHost, s_));
    CUDA_CHECK(cudaStreamSynchronize(s_));
    (*fn_)(name, host_.data(), cols);
  }
  void set_rows(int64_t rows) { rows_ = rows; }
  bool active() const { return fn_ != nullptr; }

 private:
  const TapFn* fn_;
  cudaStream_t s_;
  int64_t rows_;
  std::vector<Half> host_;
};

// The linear layers' context: the context's stream, cuBLAS handle and kernel choices, the
// activations' scratch.
gpu::LinearContext LinearContextOf(GpuContext& ctx, const GpuActivations& a) {
  return {.cublas = ctx.cublas(),
          .stream = ctx.stream(),
          .f32 = a.f32,
          .f32_elems = a.f32_elems,
          .deq = a.deq,
          .deq_elems = a.deq_elems,
          .gemv_path = ctx.gemv_path,
          .exact_fp32 = ctx.exact_fp32()};
}

// One GLM layer on the N tokens of the step (spec §1.3); see Layer in runtime/model.cc.
void Layer(const ModelConfig& cfg, int l, const LayerWeights& w, GpuContext& ctx,
           std::span<const GpuSeqStep> seqs, GpuActivations& a, int64_t N, Tapper& tap) {
  const int64_t C = cfg.hidden, F = cfg.inner, H = cfg.num_heads, D = cfg.head_dim, HD = H * D;
  const float alpha = cfg.Alpha();
  cudaStream_t s = ctx.stream();
  const gpu::LinearContext lc = LinearContextOf(ctx, a);
  auto t = [&](const char* name, const Half* dev, int64_t cols) {
    tap(StrFormat("l%d.%s", l, name), dev, cols);
  };

  gpu::LayerNorm(a.x, N, C, w.attn_norm_w.f16(), w.attn_norm_b.f16(), cfg.layernorm_eps, a.y, s);
  t("attn_norm", a.y, C);
  gpu::Linear(a.y, N, w.qkv, w.qkv_b.f16(), a.qkv, lc);  // [N, H, 3D]
  t("qkv", a.qkv, 3 * HD);
  gpu::ApplyRotary(a.qkv, N, int(H), int(D), a.positions, ctx.rope(), s);
  t("qkv_rot", a.qkv, 3 * HD);
  int64_t row = 0;
  for (const GpuSeqStep& q : seqs) {
    const int64_t T = int64_t(q.ids.size());
    Half* kc = q.kv->K(l, HD);
    Half* vc = q.kv->V(l, HD);
    gpu::AppendKv(a.qkv + row * 3 * HD, T, int(H), int(D), q.kv->length, kc, vc, s);
    gpu::Attention(a.qkv + row * 3 * HD, T, q.kv->length, int(H), int(D), kc, vc, q.prefix_len, l,
                   a.ctx + row * HD, s);
    row += T;
  }
  t("ctx", a.ctx, HD);
  // out = ln·α + Linear(in): fused into the linear layer (the branch output is never stored),
  // except when a tap wants to see that output; both ways give the same bits.
  auto residual_linear = [&](const Half* in, const TensorView& lw, const Half* bias, Half* branch,
                             const char* branch_name, const Half* ln, Half* out) {
    if (!tap.active()) {
      gpu::Linear(in, N, lw, bias, out, lc, {.ln = ln, .alpha = alpha});
      return;
    }
    gpu::Linear(in, N, lw, bias, branch, lc);
    t(branch_name, branch, C);
    gpu::DeepNormResidual(ln, branch, alpha, N * C, out, s);
  };
  residual_linear(a.ctx, w.dense, w.dense_b.f16(), a.attn, "attn_out", a.y, a.h);  // h = y·α + attn
  t("h", a.h, C);
  gpu::LayerNorm(a.h, N, C, w.ffn_norm_w.f16(), w.ffn_norm_b.f16(), cfg.layernorm_eps, a.z, s);
  t("ffn_norm", a.z, C);
  gpu::Linear(a.z, N, w.up, w.up_b.f16(), a.up, lc);  // [N, 2F]
  t("up", a.up, 2 * F);
  gpu::GeGlu(a.up, N, F, ctx.gelu_table(), a.gated, s);
  t("gated", a.gated, F);
  residual_linear(a.gated, w.down, w.down_b.f16(), a.down, "down", a.z, a.x);  // x = z·α + mlp
  t("out", a.x, C);
}

}  // namespace

Status ForwardBatchCuda(WeightStore& store, GpuContext& ctx, std::span<const GpuSeqStep> seqs,
                        GpuActivations& act, Half* logits, const TapFn* tap) {
  const ModelConfig& cfg = store.config();
  const int64_t C = cfg.hidden;
  ASSIGN_OR_RETURN(const StepSize size, CheckSteps(seqs, cfg.max_seq, cfg.vocab, act.max_tokens));
  const int64_t N = size.tokens, rows = size.logit_rows;
  if (rows > act.max_logit_rows) {
    return Errorf("Forward: %lld rows of logits exceed the capacity %lld", (long long)rows,
                  (long long)act.max_logit_rows);
  }
  cudaStream_t stream = ctx.stream();
  // The previous step synchronized at its end, so the pinned staging is free.
  int32_t* ids = act.host_ids.as<int32_t>();
  int32_t* pos = ids + act.max_tokens;
  int64_t off = 0;
  for (const GpuSeqStep& s : seqs) {
    std::copy(s.ids.begin(), s.ids.end(), ids + off);
    std::copy(s.positions.begin(), s.positions.end(), pos + off);
    off += int64_t(s.ids.size());
  }
  CUDA_CHECK(cudaMemcpyAsync(act.ids, ids, size_t(N) * 4, cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaMemcpyAsync(act.positions, pos, size_t(N) * 4, cudaMemcpyHostToDevice, stream));

  Tapper tapper(tap, stream, N);
  const GlobalWeights& g = store.globals();
  gpu::Embedding(g.embedding.f16(), cfg.vocab, C, act.ids, N, act.x, stream);
  tapper("embed", act.x, C);

  for (int l = 0; l < cfg.num_layers; ++l) {
    ASSIGN_OR_RETURN(const LayerWeights* w, store.Acquire(l));
    Layer(cfg, l, *w, ctx, seqs, act, N, tapper);
    store.Release(l);
  }

  // Final LayerNorm, then logits through the tied embedding (§1.10), for the rows asked for.
  int64_t src = 0, dst = 0;
  for (const GpuSeqStep& s : seqs) {
    const int64_t T = int64_t(s.ids.size());
    s.kv->length += T;
    const int64_t first = s.all_logits ? 0 : T - 1;
    CUDA_CHECK(cudaMemcpyAsync(act.h + dst * C, act.x + (src + first) * C,
                               size_t((T - first) * C) * sizeof(Half), cudaMemcpyDeviceToDevice,
                               stream));
    dst += T - first;
    src += T;
  }
  gpu::LayerNorm(act.h, rows, C, g.final_norm_w.f16(), g.final_norm_b.f16(), cfg.layernorm_eps,
                 act.y, stream);
  tapper.set_rows(rows);
  tapper("final_norm", act.y, C);
  const gpu::LinearContext lc = LinearContextOf(ctx, act);
  gpu::Linear(act.y, rows, g.embedding, nullptr, act.logits, lc);
  if (logits) {
    CUDA_CHECK(cudaMemcpyAsync(logits, act.logits, size_t(rows * cfg.vocab) * sizeof(Half),
                               cudaMemcpyDeviceToHost, stream));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return Status::Ok();
}

}  // namespace glm
