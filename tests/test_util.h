// Test helpers: closeness checks that print the worst element, temp directories.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "offload/model_file.h"
#include "quant/convert.h"
#include "runtime/check.h"
#include "runtime/fp16.h"
#include "runtime/npy.h"

namespace glm::test {

// Size of one fp16 ulp at |x| (the spacing of fp16 values around x; subnormal spacing below).
inline double HalfUlp(double x) {
  x = std::fabs(x);
  if (x < 6.103515625e-05) return 5.9604644775390625e-08;
  int e;
  std::frexp(x, &e);  // x = m * 2^e, m in [0.5, 1)
  return std::ldexp(1.0, e - 11);
}

struct CloseReport {
  int64_t count_outside = 0;
  int64_t worst_index = -1;
  double worst_excess = 0, max_abs = 0, max_rel = 0, expected = 0, actual = 0;
};

// Checks |actual[i] - expected[i]| <= tol(i, expected[i]) for all i; on failure prints the worst
// element (index, expected, actual), the max abs/rel error and how many are outside.
template <typename TolFn>
::testing::AssertionResult AllClose(const std::vector<double>& actual,
                                    const std::vector<double>& expected, TolFn tol,
                                    const std::string& what) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << what << ": size " << actual.size() << " vs " << expected.size();
  }
  CloseReport r;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double d = std::fabs(actual[i] - expected[i]);
    const bool bad_nan = std::isnan(actual[i]) != std::isnan(expected[i]);
    r.max_abs = std::max(r.max_abs, d);
    if (expected[i] != 0) r.max_rel = std::max(r.max_rel, d / std::fabs(expected[i]));
    const double t = tol(i, expected[i]);
    if (bad_nan || d > t) {
      ++r.count_outside;
      const double excess = bad_nan ? INFINITY : d / std::max(t, 1e-30);
      if (r.worst_index < 0 || excess > r.worst_excess) {
        r.worst_excess = excess;
        r.worst_index = int64_t(i);
        r.expected = expected[i];
        r.actual = actual[i];
      }
    }
  }
  if (r.count_outside == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": " << r.count_outside << " of " << actual.size()
         << " outside tolerance; worst at index " << r.worst_index << ": expected " << r.expected
         << ", actual " << r.actual << " (" << r.worst_excess << "x the tolerance); max abs "
         << r.max_abs << ", max rel " << r.max_rel;
}

inline std::vector<double> ToDouble(const Half* h, size_t n) {
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = HalfToFloat(h[i]);
  return out;
}

// A fresh directory under $TMPDIR (or /tmp), removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "glmtest-XXXXXX").string();
    GLM_CHECK(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The golden model's directory (tests/golden/tiny, made by tests/golden/make_golden.py).
inline std::string GoldenDir() { return std::string(GLM_SOURCE_DIR) + "/tests/golden/tiny"; }

// The reference's cases (make_golden.py): input ids, positions, prefix and the tensors they
// produce, as "<case>.<tensor>.npy".
inline constexpr const char* kGoldenCases[] = {"short", "gmask", "mask", "smask",
                                               "mask_with_gmask"};

// "<case>.<tensor>" of the golden directory (aborts with the reader's message if missing).
inline NpyArray LoadGolden(const std::string& name) {
  auto a = ReadNpy(GoldenDir() + "/" + name + ".npy");
  GLM_CHECK_MSG(a.ok(), "%s", a.status().message().c_str());
  return std::move(a).value();
}

// The input ids of a case.
inline std::vector<int32_t> GoldenIds(const std::string& c) {
  NpyArray a = LoadGolden(c + ".ids");
  return std::vector<int32_t>(a.as<int32_t>(), a.as<int32_t>() + a.numel());
}

// Its config.txt (`key value` lines): the shapes and special token ids of the reference run.
inline std::map<std::string, long> ReadGoldenConfig() {
  std::ifstream in(GoldenDir() + "/config.txt");
  std::map<std::string, long> kv;
  std::string k;
  long v;
  while (in >> k >> v) kv[k] = v;
  return kv;
}

// Its SAT checkpoint converted (glm-quantize --bits 16, or 8/4: the reference's row scheme) to
// `out`, a GGUF model file.
inline Status ConvertGoldenModel(const std::string& out, int bits = 16) {
  auto kv = ReadGoldenConfig();
  if (kv.empty()) return Errorf("missing %s/config.txt", GoldenDir().c_str());
  ConvertOptions opts;
  opts.input_dir = GoldenDir() + "/ckpt";
  opts.output_path = out;
  opts.bits = bits;
  opts.max_seq = int(kv["max_seq"]);
  opts.tokens = SpecialTokens{.mask = int32_t(kv["mask"]),
                              .gmask = int32_t(kv["gmask"]),
                              .smask = int32_t(kv["smask"]),
                              .sop = int32_t(kv["sop"]),
                              .eop = int32_t(kv["eop"]),
                              .eos = int32_t(kv["eos"])};
  return ConvertSatToGguf(opts);
}

// A command-line tool run to completion, stdin from /dev/null.
struct ToolRun {
  int status = -1;  // raw wait status
  std::string out;  // stdout and stderr together
  bool exited(int code) const { return WIFEXITED(status) && WEXITSTATUS(status) == code; }
};

// `s` quoted for the shell.
inline std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `tool args` (args already quoted as needed) through the shell.
inline ToolRun RunTool(const std::string& tool, const std::string& args) {
  ToolRun r;
  FILE* p = popen((Quote(tool) + " " + args + " </dev/null 2>&1").c_str(), "r");
  GLM_CHECK(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  r.status = pclose(p);
  return r;
}

// The whole file as text ("" if it cannot be read).
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The model the glm-generate tests run: two small layers, GLM-130B's id layout for text (20000 +
// pieces, eos 20002) and the special ids right after the demo tokenizer's 1000 pieces
// (tests/data/tokenizer/demo.model).
inline ModelConfig CliModelConfig() {
  return ModelConfig{
      .num_layers = 2,
      .hidden = 128,
      .inner = 256,
      .num_heads = 1,
      .head_dim = 128,
      .vocab = 21008,
      .max_seq = 256,
      .layernorm_eps = 1e-5f,
      .tokens = {
          .mask = 21000, .gmask = 21001, .smask = 21002, .sop = 21004, .eop = 21005, .eos = 20002}};
}

// The golden model converted to `path` and mapped (MmapStore).
inline StatusOr<std::unique_ptr<MmapStore>> OpenGoldenModel(const std::string& path) {
  RETURN_IF_ERROR(ConvertGoldenModel(path));
  return MmapStore::Open(path);
}

// A suite over the golden model converted once to a file in a temporary directory: path() and
// the file mapped on the CPU, cpu(). kAvailable decides whether the suite can run at all (e.g.
// CudaDeviceAvailable); when it cannot, nothing is converted and every test skips with its
// message.
template <Status (*kAvailable)()>
class GoldenModelSuite : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    if (!kAvailable().ok()) return;
    dir_ = new TempDir();
    path_ = new std::string(dir_->File("tiny.gguf"));
    auto store = OpenGoldenModel(*path_);
    GLM_CHECK_MSG(store.ok(), "%s", store.status().message().c_str());
    cpu_ = std::move(store).value().release();
  }
  static void TearDownTestSuite() {
    delete cpu_;
    delete path_;
    delete dir_;
    cpu_ = nullptr, path_ = nullptr, dir_ = nullptr;
  }
  void SetUp() override {
    Status st = kAvailable();
    if (!st.ok()) GTEST_SKIP() << st.message();
  }

 protected:
  inline static TempDir* dir_ = nullptr;
  inline static std::string* path_ = nullptr;
  inline static MmapStore* cpu_ = nullptr;
};

// Chained outputs of the golden model (each layer's output, the final norm, the logits) against
// the reference. Our fp32 sums run in another order than the reference's, and the rounding
// differences propagate. make_golden.py measures how far a legitimate reordering of the
// reference's own sums (fp64 instead of fp32 accumulation) moves each of these tensors: max
// |diff| M and rms R (tiny/reorder_bounds.txt). We allow kReorderFactor times both: two
// independent orders differ by about sqrt(2) times the deviation of either from the exact sum,
// and the max of a tail is noisier than the rms.
inline constexpr double kReorderFactor = 3.0;

struct ReorderBound {
  double max_abs = 0, rms = 0;
};

// "<case>.<tensor>" -> the reference's reorder distance (layer0..2, final_norm, logits).
inline std::map<std::string, ReorderBound> ReadReorderBounds() {
  std::ifstream in(GoldenDir() + "/reorder_bounds.txt");
  std::map<std::string, ReorderBound> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string c, t;
    ReorderBound b;
    if (ls >> c >> t >> b.max_abs >> b.rms) out[c + "." + t] = b;
  }
  return out;
}

// rms difference within kReorderFactor·R and every element within kReorderFactor·M (so
// bit-identical where M is 0); prints the share of bit-identical values.
inline ::testing::AssertionResult CompareChained(const std::string& what, const Half* actual,
                                                 const Half* expected, int64_t n,
                                                 const ReorderBound& b) {
  std::vector<double> e = ToDouble(expected, size_t(n)), a = ToDouble(actual, size_t(n));
  double sq = 0;
  int64_t exact = 0;
  for (int64_t i = 0; i < n; ++i) {
    sq += (a[i] - e[i]) * (a[i] - e[i]);
    exact += actual[i].bits == expected[i].bits;
  }
  const double rms = std::sqrt(sq / double(n));
  std::printf("  %-36s %7.3f%% bit-identical, rms diff %.3g (reorder %.3g)\n", what.c_str(),
              100.0 * double(exact) / double(n), rms, b.rms);
  if (rms > kReorderFactor * b.rms + 1e-12) {
    return ::testing::AssertionFailure() << what << ": rms difference " << rms << " > "
                                         << kReorderFactor << " x reorder rms " << b.rms;
  }
  return AllClose(
      a, e, [&](size_t, double) { return kReorderFactor * b.max_abs; }, what);
}

}  // namespace glm::test
