// glm-synth: writes a synthetic model file (random weights of realistic scale) for a preset
// config, for benchmarks and demos that need no checkpoint.
#include <gflags/gflags.h>

#include <chrono>

#include "quant/synthetic.h"
#include "tools/tool_util.h"

DEFINE_string(preset, "tiny", "demo | tiny | small | medium | glm130b-L<n> (GLM-130B shapes, n layers)");
DEFINE_string(output, "", "model file to write (GGUF)");
DEFINE_uint64(seed, 1, "random seed");
DEFINE_int32(layers, 0, "override the preset's layer count");
DEFINE_bool(quiet, false, "no progress display");

int main(int argc, char** argv) {
  gflags::SetUsageMessage("glm-synth --preset NAME --output FILE");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  const char* tool = "glm-synth";
  if (FLAGS_output.empty()) glm::Die(tool, glm::Errorf("--output is required"));
  auto cfg = glm::SyntheticPreset(FLAGS_preset);
  if (!cfg.ok()) glm::Die(tool, cfg.status());
  if (FLAGS_layers > 0) cfg->num_layers = FLAGS_layers;
  std::fprintf(stderr, "%s: preset %s: %s -> %s\n", tool, FLAGS_preset.c_str(),
               cfg->ToString().c_str(), FLAGS_output.c_str());
  glm::Progress progress(FLAGS_quiet);
  const auto start = std::chrono::steady_clock::now();
  glm::Status st = glm::WriteSyntheticModel(
      FLAGS_output, cfg.value(), FLAGS_seed, [&](uint64_t done, uint64_t total) {
        progress.Update(double(done) / double(total),
                        glm::StrFormat("%.2f/%.2f GB", done / 1e9, total / 1e9));
      });
  progress.Done();
  if (!st.ok()) glm::Die(tool, st);
  std::fprintf(stderr, "%s: wrote %s in %.1f s\n", tool, FLAGS_output.c_str(),
               glm::Seconds(start));
  return 0;
}
