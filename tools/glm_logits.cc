// glm-logits: the debug tap. Runs a token sequence (context with its mask, [sop], generated
// tokens) through the model and writes float32 logits of the last position, or of every one.
#include <gflags/gflags.h>

#include <chrono>

#include "offload/model_file.h"
#include "runtime/layout.h"
#include "runtime/model.h"
#include "runtime/npy.h"
#include "tools/tool_util.h"

DEFINE_string(model, "", "model file (from glm-quantize)");
DEFINE_string(ids, "", "the whole sequence as the model sees it, e.g. \"5,6,7,150001,150004\"");
DEFINE_string(output, "", "output .npy: float32 [V], or [T, V] with --all");
DEFINE_bool(all, false, "logits of every position instead of the last");
DEFINE_bool(verbose, false, "print the layout (mask mode, positions) and timing");

int main(int argc, char** argv) {
  gflags::SetUsageMessage("glm-logits --model FILE --ids \"i,j,k,...\" --output OUT.npy [--all]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  const char* tool = "glm-logits";
  if (FLAGS_model.empty() || FLAGS_ids.empty() || FLAGS_output.empty()) {
    glm::Die(tool, glm::Errorf("--model, --ids and --output are required"));
  }
  auto ids = glm::ParseIdList(FLAGS_ids);
  if (!ids.ok()) glm::Die(tool, ids.status().WithContext("--ids"));
  auto store = glm::MmapStore::Open(FLAGS_model);
  if (!store.ok()) glm::Die(tool, store.status(), "convert a checkpoint with glm-quantize first");
  const glm::ModelConfig& cfg = store.value()->config();
  const int64_t T = int64_t(ids->size());
  if (T > cfg.max_seq) {
    glm::Die(tool, glm::Errorf("%lld tokens exceed the model's maximum sequence length %d",
                               (long long)T, cfg.max_seq));
  }
  auto layout = glm::DeriveLayout(ids.value(), cfg.tokens);
  if (!layout.ok()) glm::Die(tool, layout.status());
  if (FLAGS_verbose) {
    std::fprintf(stderr, "%s: %s, %lld tokens, mode %s, mask at %lld, prefix %lld, sop at %lld\n",
                 tool, cfg.ToString().c_str(), (long long)T, glm::MaskModeName(layout->mode),
                 (long long)layout->mask_position, (long long)layout->prefix_len,
                 (long long)layout->sop_index);
  }
  const auto start = std::chrono::steady_clock::now();
  glm::RotaryTable rope = glm::RotaryTable::Build(cfg.head_dim, cfg.max_seq);
  glm::KvCache kv = glm::KvCache::Allocate(cfg, T);
  glm::Activations act = glm::Activations::Allocate(cfg, T, T);
  const int64_t rows = FLAGS_all ? T : 1;
  std::vector<glm::Half> logits(size_t(rows) * cfg.vocab);
  glm::ForwardArgs args{.ids = ids.value(), .positions = layout->positions,
                        .prefix_len = layout->prefix_len, .all_logits = FLAGS_all};
  glm::Status st = glm::Forward(*store.value(), rope, kv, act, args, logits.data());
  if (!st.ok()) glm::Die(tool, st);
  std::vector<float> out(logits.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = glm::HalfToFloat(logits[i]);
  std::vector<int64_t> shape = FLAGS_all ? std::vector<int64_t>{T, cfg.vocab}
                                         : std::vector<int64_t>{cfg.vocab};
  st = glm::WriteNpy(FLAGS_output, glm::DType::kF32, shape, out.data());
  if (!st.ok()) glm::Die(tool, st);
  // Top-5 of the last row: a quick look without numpy.
  const float* last = out.data() + (rows - 1) * cfg.vocab;
  std::vector<int> top;
  for (int k = 0; k < 5 && k < cfg.vocab; ++k) {
    int best = -1;
    for (int v = 0; v < cfg.vocab; ++v) {
      if (std::find(top.begin(), top.end(), v) != top.end()) continue;
      if (best < 0 || last[v] > last[best]) best = v;
    }
    top.push_back(best);
  }
  std::string top_str;
  for (int v : top) top_str += glm::StrFormat(" %d:%.3f", v, last[v]);
  std::fprintf(stderr, "%s: %lld tokens in %.3f s; wrote %s %s; top-5 of the last position:%s\n",
               tool, (long long)T, glm::Seconds(start), FLAGS_output.c_str(),
               FLAGS_all ? "[T, V]" : "[V]", top_str.c_str());
  return 0;
}
