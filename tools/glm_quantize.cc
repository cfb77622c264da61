// glm-quantize: converts a SAT checkpoint (the format GLM-130B is distributed in) into a
// glmstream model file. This build writes fp16 (--bits 16).
#include <gflags/gflags.h>

#include <chrono>

#include "quant/convert.h"
#include "tools/tool_util.h"

DEFINE_string(input, "", "SAT checkpoint directory (holds 'latest' and <iter>/mp_rank_XX_model_states.pt)");
DEFINE_string(output, "", "model file to write (GGUF); written as FILE.partial, then renamed");
DEFINE_int32(bits, 16, "weight bits: 16 (fp16)");
DEFINE_string(special_tokens, "",
              "special ids for models with their own vocabulary, e.g. "
              "mask=1000,gmask=1001,smask=1002,sop=1004,eop=1005,eos=2 (default: GLM-130B's)");
DEFINE_int32(num_heads, 0, "attention heads (default: hidden / 128)");
DEFINE_int32(max_seq, 2048, "maximum sequence length recorded in the file");
DEFINE_bool(force, false, "replace OUTPUT if it exists");
DEFINE_bool(quiet, false, "no progress display");

int main(int argc, char** argv) {
  gflags::SetUsageMessage("glm-quantize --input SAT_DIR --output FILE [--bits 16]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  const char* tool = "glm-quantize";
  if (FLAGS_input.empty() || FLAGS_output.empty()) {
    glm::Die(tool, glm::Errorf("--input and --output are required"),
             "glm-quantize --input /data/glm-130b-sat --output glm-130b.gguf");
  }
  glm::ConvertOptions opts;
  opts.input_dir = FLAGS_input;
  opts.output_path = FLAGS_output;
  opts.bits = FLAGS_bits;
  opts.num_heads = FLAGS_num_heads;
  opts.max_seq = FLAGS_max_seq;
  opts.overwrite = FLAGS_force;
  if (!FLAGS_special_tokens.empty()) {
    auto t = glm::ParseSpecialTokens(FLAGS_special_tokens);
    if (!t.ok()) glm::Die(tool, t.status());
    opts.tokens = t.value();
  }
  std::fprintf(stderr, "%s: input=%s output=%s bits=%d\n", tool, opts.input_dir.c_str(),
               opts.output_path.c_str(), opts.bits);
  glm::Progress progress(FLAGS_quiet);
  const auto start = std::chrono::steady_clock::now();
  uint64_t total_bytes = 0;
  opts.progress = [&](const glm::ConvertProgress& p) {
    total_bytes = p.bytes_total;
    const double secs = glm::Seconds(start), gbps = p.bytes_done / 1e9 / std::max(secs, 1e-9);
    const double eta = gbps > 0 ? (p.bytes_total - p.bytes_done) / 1e9 / gbps : 0;
    progress.Update(double(p.bytes_done) / double(std::max<uint64_t>(p.bytes_total, 1)),
                    glm::StrFormat("%d/%d tensors %.2f/%.2f GB %.2f GB/s ETA %.0fs %s",
                                   p.tensors_done, p.tensors_total, p.bytes_done / 1e9,
                                   p.bytes_total / 1e9, gbps, eta, p.tensor->c_str()));
  };
  glm::Status st = glm::ConvertSatToGguf(opts);
  progress.Done();
  if (!st.ok()) glm::Die(tool, st);
  std::fprintf(stderr, "%s: wrote %s (%.3f GB of weights) in %.1f s\n", tool,
               opts.output_path.c_str(), total_bytes / 1e9, glm::Seconds(start));
  return 0;
}
