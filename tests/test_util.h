// Test helpers: closeness checks that print the worst element, temp directories.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "quant/convert.h"
#include "runtime/check.h"
#include "runtime/fp16.h"

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
    return ::testing::AssertionFailure() << what << ": size " << actual.size() << " vs "
                                         << expected.size();
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

// Its config.txt (`key value` lines): the shapes and special token ids of the reference run.
inline std::map<std::string, long> ReadGoldenConfig() {
  std::ifstream in(GoldenDir() + "/config.txt");
  std::map<std::string, long> kv;
  std::string k;
  long v;
  while (in >> k >> v) kv[k] = v;
  return kv;
}

// Its SAT checkpoint converted (glm-quantize --bits 16) to `out`, a GGUF model file.
inline Status ConvertGoldenModel(const std::string& out) {
  auto kv = ReadGoldenConfig();
  if (kv.empty()) return Errorf("missing %s/config.txt", GoldenDir().c_str());
  ConvertOptions opts;
  opts.input_dir = GoldenDir() + "/ckpt";
  opts.output_path = out;
  opts.max_seq = int(kv["max_seq"]);
  opts.tokens = SpecialTokens{.mask = int32_t(kv["mask"]),
                              .gmask = int32_t(kv["gmask"]),
                              .smask = int32_t(kv["smask"]),
                              .sop = int32_t(kv["sop"]),
                              .eop = int32_t(kv["eop"]),
                              .eos = int32_t(kv["eos"])};
  return ConvertSatToGguf(opts);
}

}  // namespace glm::test
