// glm-synth: writes a synthetic model (random weights of realistic scale) for a preset config,
// for benchmarks and demos that need no checkpoint: a glmstream model file (--format gguf) or a
// SAT checkpoint of any tensor-parallel degree (--format sat), as GLM-130B is distributed.
#include <gflags/gflags.h>

#include <chrono>

#include "quant/synthetic.h"
#include "tools/tool_util.h"

DEFINE_string(preset, "tiny",
              "demo | tiny | small | medium | glm130b-L<n> (GLM-130B shapes, n layers)");
DEFINE_string(output, "", "model file (gguf) or checkpoint directory (sat) to write");
DEFINE_string(format, "gguf", "gguf: a glmstream f16 model file; sat: a SAT checkpoint directory");
DEFINE_int32(tp, 1, "sat: tensor-parallel ranks (rank files) of the checkpoint");
DEFINE_uint64(seed, 1, "random seed");
DEFINE_int32(layers, 0, "override the preset's layer count");
DEFINE_int32(vocab, 0, "override the preset's vocabulary size (special ids move to its top)");
DEFINE_bool(outliers, false,
            "sat: make 1 in 4096 linear weights 6x larger (a heavy-tailed stress "
            "case; GLM-130B's weights are narrow)");
DEFINE_bool(quiet, false, "no progress display");

int main(int argc, char** argv) {
  gflags::SetUsageMessage("glm-synth --preset NAME --output FILE|DIR [--format gguf|sat --tp N]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  const char* tool = "glm-synth";
  if (FLAGS_output.empty()) glm::Die(tool, glm::Errorf("--output is required"));
  auto cfg = glm::SyntheticPreset(FLAGS_preset);
  if (!cfg.ok()) glm::Die(tool, cfg.status());
  if (FLAGS_layers > 0) cfg->num_layers = FLAGS_layers;
  if (FLAGS_vocab > 0) {
    const int v = FLAGS_vocab;
    cfg->vocab = v;
    cfg->tokens = glm::SpecialTokens{
        .mask = v - 8, .gmask = v - 7, .smask = v - 6, .sop = v - 4, .eop = v - 3, .eos = v - 2};
  }
  if (glm::Status st = cfg->Validate(); !st.ok()) glm::Die(tool, st);
  std::fprintf(stderr, "%s: preset %s: %s -> %s (%s%s)\n", tool, FLAGS_preset.c_str(),
               cfg->ToString().c_str(), FLAGS_output.c_str(), FLAGS_format.c_str(),
               FLAGS_format == "sat" ? glm::StrFormat(", TP=%d", FLAGS_tp).c_str() : "");
  glm::Progress progress(FLAGS_quiet);
  const auto start = std::chrono::steady_clock::now();
  auto report = [&](uint64_t done, uint64_t total) {
    const double secs = glm::Seconds(start);
    progress.Update(double(done) / double(total),
                    glm::StrFormat("%.2f/%.2f GB, %.0f MB/s", done / 1e9, total / 1e9,
                                   done / 1e6 / std::max(secs, 1e-3)));
  };
  glm::Status st;
  if (FLAGS_format == "sat") {
    st = glm::WriteSyntheticSat(
        FLAGS_output, cfg.value(),
        {.tp = FLAGS_tp, .seed = FLAGS_seed, .outliers = FLAGS_outliers, .progress = report});
  } else if (FLAGS_format == "gguf") {
    st = glm::WriteSyntheticModel(FLAGS_output, cfg.value(), FLAGS_seed, report);
  } else {
    st = glm::Errorf("--format '%s': expected gguf or sat", FLAGS_format.c_str());
  }
  progress.Done();
  if (!st.ok()) glm::Die(tool, st);
  std::fprintf(stderr, "%s: wrote %s in %.1f s (special ids: %s)\n", tool, FLAGS_output.c_str(),
               glm::Seconds(start),
               glm::StrFormat("mask=%d,gmask=%d,smask=%d,sop=%d,eop=%d,eos=%d", cfg->tokens.mask,
                              cfg->tokens.gmask, cfg->tokens.smask, cfg->tokens.sop,
                              cfg->tokens.eop, cfg->tokens.eos)
                   .c_str());
  return 0;
}
