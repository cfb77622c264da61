// glm-quantize: converts a SAT checkpoint (the format GLM-130B is distributed in) or an f16 model
// file into a glmstream model file: f16, int8 or int4 weights (GLM-130B's per-row scheme, bit for
// bit, or group-wise), re-sharded to any tensor-parallel degree, optionally zstd-compressed, with
// bounded memory and --resume after an interruption. See docs/glm-quantize.md.
#include <fcntl.h>
#include <gflags/gflags.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "quant/compress.h"
#include "quant/quantize.h"
#include "tools/tool_util.h"

DEFINE_string(input, "",
              "SAT checkpoint directory (holds 'latest' and <iter>/mp_rank_XX_model_states.pt) "
              "or an f16 glmstream model file (any TP degree)");
DEFINE_string(output, "", "model file to write (GGUF); written as FILE.partial, then renamed");
DEFINE_int32(bits, 16, "weight bits: 16 (fp16), 8 (int8) or 4 (int4)");
DEFINE_string(scheme, "row",
              "row: one scale per output row (GLM-130B's scheme, bit-exact with "
              "convert_tp.py); group: one scale per --group-size inputs");
DEFINE_int32(group_size, 128, "inputs per scale for --scheme group");
DEFINE_int32(tp, 1, "tensor-parallel ranks of the output (1, 2, 4 or 8)");
DEFINE_int32(zstd, 0, "zstd level (1..19) to compress each extent that gets smaller; 0: off");
DEFINE_bool(zstd_planes, true,
            "with --zstd: compress f16-only extents as separate low/high byte planes");
DEFINE_string(max_memory, "",
              "convert in row blocks of about this size (e.g. 256M, 2G); "
              "default: whole tensors");
DEFINE_bool(resume, false, "continue an interrupted conversion (same input and options)");
DEFINE_string(special_tokens, "",
              "special ids for models with their own vocabulary, e.g. "
              "mask=1000,gmask=1001,smask=1002,sop=1004,eop=1005,eos=2 (default: GLM-130B's)");
DEFINE_int32(num_heads, 0, "attention heads (default: hidden / 128)");
DEFINE_int32(max_seq, 2048, "maximum sequence length recorded in the file");
DEFINE_bool(force, false, "replace OUTPUT if it exists");
DEFINE_bool(quiet, false, "no progress display");
DEFINE_bool(verbose, false, "print the effective configuration on one line");
DEFINE_string(measure_zstd, "",
              "instead of converting: measure zstd on this model file's extents "
              "(ratio, compression and decompression speed, disk read speed) and print a table");

namespace glm {
namespace {

const char* kTool = "glm-quantize";

std::string Size(uint64_t b) {
  if (b >= (1ull << 30)) return StrFormat("%.2f GiB", b / double(1ull << 30));
  if (b >= (1ull << 20)) return StrFormat("%.1f MiB", b / double(1ull << 20));
  return StrFormat("%.1f KiB", b / 1024.0);
}

void PrintSummary(const QuantizeReport& r, const std::string& out) {
  std::fprintf(stderr, "%s: wrote %s in %.1f s\n", kTool, out.c_str(), r.seconds);
  std::fprintf(stderr, "  input   %s of tensors (%s)\n", Size(r.input_bytes).c_str(),
               r.source.c_str());
  std::fprintf(stderr, "  output  %s (%.1f%% of the input), %s, %d extents",
               Size(r.output_bytes).c_str(),
               100.0 * r.output_bytes / std::max<uint64_t>(r.input_bytes, 1),
               r.format.ToString().c_str(), r.extents_total);
  if (r.extents_reused) std::fprintf(stderr, ", %d reused by --resume", r.extents_reused);
  std::fprintf(stderr, "\n  speed   %.2f GB/s of input\n",
               r.input_bytes / 1e9 / std::max(r.seconds, 1e-9));
  if (!r.errors.empty()) {
    std::fprintf(
        stderr,
        "  quantization error (row relative error = ||w - w_q|| / ||w|| per output row):\n");
    std::fprintf(stderr, "    %-12s %10s %12s %12s %10s %12s\n", "tensor", "rows", "max rel",
                 "mean rel", "SNR dB", "max abs");
    for (const auto& [type, e] : r.errors) {
      std::fprintf(stderr, "    %-12s %10lld %12.3e %12.3e %10.2f %12.3e\n", type.c_str(),
                   (long long)e.rows, e.max_row_rel, e.mean_row_rel(), e.snr_db(), e.max_abs);
    }
  }
  if (r.zstd) {
    auto kind = [](const char* what, const CompressStats::Kind& k) {
      if (k.extents == 0) return;
      std::fprintf(stderr, "    %-10s %s -> %s (ratio %.3f), %d of %d extents compressed\n", what,
                   Size(k.raw).c_str(), Size(k.stored).c_str(),
                   double(k.stored) / std::max<uint64_t>(k.raw, 1), k.compressed, k.extents);
    };
    std::fprintf(stderr, "  zstd (%.1f s):\n", r.zstd->seconds);
    kind("f16", r.zstd->f16);
    kind("quantized", r.zstd->quantized);
  }
}

// --measure-zstd: ratios and speeds per kind of extent, and the disk's read speed, as a table.
int MeasureZstd(const std::string& path, int level) {
  auto f = GgufFile::Open(path);
  if (!f.ok()) Die(kTool, f.status());
  auto lay = ReadModelLayout(*f.value());
  if (!lay.ok()) Die(kTool, lay.status());
  if (lay->compressed) Die(kTool, Errorf("%s is already compressed", path.c_str()));
  const int fd = f.value()->fd();
  // Up to 512 MiB from extent 0 (embedding: f16) and from the first layer extents.
  auto sample = [&](int first, int last, uint64_t cap) {
    std::string s;
    for (int e = first; e <= last && s.size() < cap; ++e) {
      const auto& x = lay->extents[e];
      const size_t n = size_t(std::min<uint64_t>(x.raw_bytes, cap - s.size()));
      const size_t at = s.size();
      s.resize(at + n);
      if (pread(fd, s.data() + at, n, off_t(x.file_offset)) != ssize_t(n))
        Die(kTool, Errorf("read failed"));
    }
    return s;
  };
  const int layers_end = std::min<int>(int(lay->extents.size()) - 1, 4);
  struct Row {
    const char* what;
    std::string data;
  } rows[] = {{"extent 0 (embedding, f16)", sample(0, 0, 512 << 20)},
              {"layer extents", sample(1, layers_end, 512 << 20)}};
  std::printf("file: %s (%s), zstd level %d, one thread, speeds per CPU-second\n\n", path.c_str(),
              lay->format.ToString().c_str(), level);
  std::printf("| data | codec | sample MiB | ratio | compress MB/s | decompress MB/s |\n");
  std::printf("|---|---|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    if (r.data.empty()) continue;
    for (int codec : {kCodecZstd, kCodecZstdPlanes}) {
      // CPU time of this thread: the speed of one core, whatever else runs on the machine.
      auto cpu = [] {
        timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
      };
      std::string z;
      double t0 = cpu();
      Status st = CompressBuffer(codec, level, r.data.data(), r.data.size(), &z);
      if (!st.ok()) Die(kTool, st);
      const double tc = cpu() - t0;
      std::vector<char> back(r.data.size());
      double td = 1e30;
      for (int rep = 0; rep < 3; ++rep) {
        t0 = cpu();
        st = DecodeExtent(codec, z.data(), z.size(), back.data(), back.size());
        if (!st.ok()) Die(kTool, st);
        td = std::min(td, cpu() - t0);
      }
      if (std::memcmp(back.data(), r.data.data(), back.size()) != 0)
        Die(kTool, Errorf("round trip differs"));
      std::printf("| %s | %s | %.0f | %.3f | %.0f | %.0f |\n", r.what,
                  codec == kCodecZstd ? "zstd" : "zstd, byte planes", r.data.size() / 1048576.0,
                  double(z.size()) / r.data.size(), r.data.size() / 1e6 / tc,
                  r.data.size() / 1e6 / td);
    }
  }
  // Disk: O_DIRECT reads of up to 2 GiB of the file (no page cache).
  const int dfd = open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (dfd >= 0) {
    const size_t chunk = 16 << 20;
    void* buf = nullptr;
    if (posix_memalign(&buf, 4096, chunk) == 0) {
      const uint64_t size = std::min<uint64_t>(f.value()->file_size() / chunk * chunk, 2ull << 30);
      auto t0 = std::chrono::steady_clock::now();
      uint64_t got = 0;
      for (uint64_t off = 0; off < size; off += chunk) {
        const ssize_t r = pread(dfd, buf, chunk, off_t(off));
        if (r <= 0) break;
        got += uint64_t(r);
      }
      std::printf("\ndisk: O_DIRECT sequential read of %.0f MiB: %.0f MB/s\n", got / 1048576.0,
                  got / 1e6 / Seconds(t0));
      free(buf);
    }
    close(dfd);
  } else {
    std::printf("\ndisk: O_DIRECT not available here (%s)\n", std::strerror(errno));
  }
  return 0;
}

}  // namespace
}  // namespace glm

int main(int argc, char** argv) {
  using namespace glm;
  gflags::SetUsageMessage(
      "glm-quantize --input SAT_DIR|MODEL.gguf --output FILE [--bits 16|8|4] [--scheme row|group "
      "--group-size G] [--tp N] [--zstd LEVEL] [--max-memory SIZE] [--resume]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (!FLAGS_measure_zstd.empty())
    return MeasureZstd(FLAGS_measure_zstd, FLAGS_zstd > 0 ? FLAGS_zstd : 3);
  if (FLAGS_input.empty() || FLAGS_output.empty()) {
    Die(kTool, Errorf("--input and --output are required"),
        "glm-quantize --input /data/glm-130b-sat --output glm-130b-int4.gguf --bits 4");
  }
  QuantizeOptions opts;
  opts.input = FLAGS_input;
  opts.output_path = FLAGS_output;
  opts.format.quant.bits = FLAGS_bits;
  if (FLAGS_bits != 16 && FLAGS_bits != 8 && FLAGS_bits != 4) {
    Die(kTool, Errorf("--bits %d: expected 16, 8 or 4", FLAGS_bits));
  }
  if (FLAGS_scheme == "group") {
    if (FLAGS_group_size <= 0)
      Die(kTool, Errorf("--group-size %d must be positive", FLAGS_group_size));
    opts.format.quant.group_size = FLAGS_bits == 16 ? 0 : FLAGS_group_size;
  } else if (FLAGS_scheme != "row") {
    Die(kTool, Errorf("--scheme '%s': expected row or group", FLAGS_scheme.c_str()));
  }
  if (FLAGS_tp != 1 && FLAGS_tp != 2 && FLAGS_tp != 4 && FLAGS_tp != 8) {
    Die(kTool, Errorf("--tp %d: expected 1, 2, 4 or 8", FLAGS_tp));
  }
  opts.format.tp = FLAGS_tp;
  opts.zstd_level = FLAGS_zstd;
  opts.zstd_planes = FLAGS_zstd_planes;
  opts.resume = FLAGS_resume;
  opts.overwrite = FLAGS_force;
  opts.source.num_heads = FLAGS_num_heads;
  opts.source.max_seq = FLAGS_max_seq;
  if (!FLAGS_max_memory.empty()) {
    auto m = ParseBytes(FLAGS_max_memory);
    if (!m.ok()) Die(kTool, m.status().WithContext("--max-memory"));
    if (*m == 0) Die(kTool, Errorf("--max-memory '%s' must be positive", FLAGS_max_memory.c_str()));
    opts.max_memory = m.value();
  }
  if (!FLAGS_special_tokens.empty()) {
    auto t = ParseSpecialTokens(FLAGS_special_tokens);
    if (!t.ok()) Die(kTool, t.status());
    opts.source.tokens = t.value();
  }
  const std::string stage = FLAGS_zstd > 0 ? FLAGS_output + ".uncompressed" : FLAGS_output;
  struct stat sb;
  if (!FLAGS_resume && stat((stage + ".partial.journal").c_str(), &sb) == 0) {
    std::fprintf(stderr,
                 "%s: note: starting over; an interrupted conversion to %s can be continued "
                 "with --resume\n",
                 kTool, FLAGS_output.c_str());
  }
  const std::string config = StrFormat(
      "input=%s output=%s bits=%d scheme=%s%s tp=%d zstd=%d max_memory=%s resume=%d",
      FLAGS_input.c_str(), FLAGS_output.c_str(), FLAGS_bits,
      opts.format.quant.group_size ? "group" : "row",
      opts.format.quant.group_size
          ? StrFormat(" group_size=%d", opts.format.quant.group_size).c_str()
          : "",
      FLAGS_tp, FLAGS_zstd, FLAGS_max_memory.empty() ? "whole-tensors" : FLAGS_max_memory.c_str(),
      int(FLAGS_resume));
  std::fprintf(stderr, "%s: %s\n", kTool,
               FLAGS_verbose ? config.c_str() : opts.format.ToString().c_str());

  // Test hook: SIGKILL this process after N extents were converted and journaled.
  int kill_after = 0, converted = 0;
  if (const char* k = std::getenv("GLM_QUANTIZE_TEST_KILL_AFTER")) kill_after = std::atoi(k);
  opts.on_extent_done = [&](int) {
    if (kill_after > 0 && ++converted == kill_after) kill(getpid(), SIGKILL);
  };

  Progress progress(FLAGS_quiet);
  const auto start = std::chrono::steady_clock::now();
  const char* last_phase = "";
  double phase_start = 0;
  uint64_t phase_bytes = 0;
  opts.progress = [&](const QuantizeProgress& p) {
    const double secs = Seconds(start);
    if (std::strcmp(p.phase, last_phase) != 0) {  // throughput and ETA per phase
      if (*last_phase) {
        phase_start = secs;
        phase_bytes = p.bytes_done;
      }
      last_phase = p.phase;
    }
    const double rate = (p.bytes_done - phase_bytes) / std::max(secs - phase_start, 1e-3);
    const double eta = rate > 0 ? (p.bytes_total - p.bytes_done) / rate : 0;
    const bool gb = p.bytes_total >= 1000000000;
    const double unit = gb ? 1e9 : 1e6;
    progress.Update(double(p.bytes_done) / double(std::max<uint64_t>(p.bytes_total, 1)),
                    StrFormat("%s: layer %d/%d, %.2f/%.2f %s, %.0f MB/s, ETA %.0f s", p.phase,
                              p.layers_done, p.layers_total, p.bytes_done / unit,
                              p.bytes_total / unit, gb ? "GB" : "MB", rate / 1e6, eta));
  };
  StatusOr<QuantizeReport> report = QuantizeModel(opts);
  progress.Done();
  if (!report.ok()) {
    const std::string& m = report.status().message();
    const char* hint = nullptr;
    if (m.find("No space left") != std::string::npos) {
      hint =
          "free disk space and rerun: the output takes about the checkpoint's size for f16, half "
          "of it "
          "for int8, a quarter for int4 (twice that meanwhile with --zstd)";
    } else if (m.find("exists; pass --force") != std::string::npos) {
      hint = "pass --force to replace it";
    } else if (m.find("group size") != std::string::npos) {
      hint =
          "pick a --group-size that divides every weight's per-rank input count (e.g. 64 or 128)";
    }
    Die(kTool, report.status(), hint);
  }
  for (const std::string& w : report->warnings)
    std::fprintf(stderr, "%s: warning: %s\n", kTool, w.c_str());
  PrintSummary(report.value(), FLAGS_output);
  return 0;
}
