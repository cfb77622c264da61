// glm-generate: blank filling and left-to-right generation as GLM-130B's generate.py (spec §5),
// with its arguments, plus batches of queries sharing each weight pass, tokens streamed as they
// are produced, a per-query summary and clear errors.
#include <gflags/gflags.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "offload/gguf.h"
#include "offload/store.h"
#include "offload/streaming_store.h"
#include "runtime/generation.h"
#include "runtime/tokenizer.h"
#include "tools/tool_util.h"
#if GLM_HAVE_CUDA
#include "offload/layer_source_cuda.h"
#include "runtime/device_cuda.h"
#include "runtime/engine_cuda.h"
#endif

DEFINE_string(model, "", "model file (glm-quantize or glm-synth output)");
DEFINE_string(tokenizer, "",
              "SentencePiece model: GLM-130B's ice_text.model (from icetk); the demo "
              "uses tests/data/tokenizer/demo.model");
DEFINE_string(host_mem, "0",
              "host memory budget for the weights, e.g. 64G (0: no budget); with --gpu-mem, the "
              "pinned host memory for the layers the GPU streams");
DEFINE_bool(huge_pages, false,
            "CPU: read the weights into memory on 2 MiB transparent huge pages (decode -2 to +5% "
            "on the development VM; bench-kernels --only=pages measures a machine); "
            "without --host-mem the whole file is read at start instead of being mapped");
DEFINE_string(gpu_mem, "0",
              "run on the GPU under this device memory budget (context, KV cache and activations "
              "included), e.g. 40G; 'all' for the whole device; 0: on the CPU");
DEFINE_int32(gpu_device, 0, "with --gpu-mem: the CUDA device");
DEFINE_int32(gpu_layers, -1,
             "with --gpu-mem: keep at most this many layers resident on the GPU, streaming the "
             "others from pinned host memory (-1: as many as the budget holds)");
DEFINE_string(input_source, "interactive", "'interactive' or a file with one query per line");
DEFINE_string(output_path, "./samples", "directory for one output file per query");
DEFINE_bool(with_id, false, "input lines are 'id<TAB>text'; the output file is <id>.txt");
DEFINE_int32(out_seq_length, 256, "per blank: context + [sop] + generated tokens at most");
DEFINE_int32(min_gen_length, 0, "minimum tokens generated per blank (end tokens banned before)");
DEFINE_string(sampling_strategy, "BaseStrategy", "BaseStrategy | BeamSearchStrategy");
DEFINE_int32(num_beams, 1, "beams of BeamSearchStrategy");
DEFINE_double(length_penalty, 0.0, "BeamSearchStrategy: score / ((5 + len) / 6) ** length_penalty");
DEFINE_int32(no_repeat_ngram_size, 0, "BeamSearchStrategy: ban repeating n-grams of this size");
DEFINE_bool(print_all_beams, false, "print every beam, not only the best");
DEFINE_int32(top_k, 0, "BaseStrategy: keep the k most likely tokens (0: all)");
DEFINE_double(top_p, 0.0, "BaseStrategy: keep the most likely tokens up to probability p (0: off)");
DEFINE_double(temperature, 1.0, "BaseStrategy: divide the logits by this");
DEFINE_uint64(seed, 1234, "random seed; each query (line) draws from its own stream of it");
DEFINE_bool(deterministic, false, "BeamSearchStrategy: top candidates instead of sampled ones");
DEFINE_int32(batch_size, 1, "queries of an input file run together, one weight pass per step");
DEFINE_bool(filter_vocab, true,
            "generate only the tokenizer's text pieces and eop/eos (false: "
            "sample the whole vocabulary like the reference)");
DEFINE_string(color, "auto", "mark filled spans with ANSI underline/colour: auto | always | never");
DEFINE_bool(quiet, false, "print only the outputs (no echo, streaming or summaries)");
DEFINE_bool(verbose, false, "print the per-query notes and the session's shapes");
DEFINE_bool(verify, false,
            "check every extent's xxh64 checksum: all before mapping a resident model (a full "
            "read of the file), each as it is read when streaming");

namespace glm {
namespace {

const char* kTool = "glm-generate";

// --huge-pages is advice: says when the kernel did not follow it for a load of 64 MiB or more
// (a 2 MiB page needs 2 MiB of aligned buffer, so small models say nothing).
void NoteHugePageGrant(const StreamingStats& st) {
  if (st.open_load_bytes < (uint64_t(64) << 20)) return;
  const std::string mode = TransparentHugePageMode();
  if (mode.empty() || mode == "never") {
    std::fprintf(stderr,
                 "%s: note: --huge-pages: transparent huge pages are %s on this machine, so the "
                 "weights stay on 4 KiB pages (/sys/kernel/mm/transparent_hugepage/enabled)\n",
                 kTool, mode.empty() ? "not available" : "disabled ('never')");
  } else if (st.open_huge_bytes < st.open_load_bytes / 2) {
    std::fprintf(stderr,
                 "%s: note: --huge-pages: the kernel put %s of the %s loaded on huge pages (free "
                 "memory fragmented, or its defrag setting: "
                 "/sys/kernel/mm/transparent_hugepage/defrag)\n",
                 kTool, FormatBytes(st.open_huge_bytes).c_str(),
                 FormatBytes(st.open_load_bytes).c_str());
  }
}

std::string Strip(const std::string& s) {
  const char* ws = " \t\r\n\v\f";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// The first n code points of UTF-8 text (Python's s[:n]).
std::string Utf8Prefix(const std::string& s, size_t n) {
  size_t i = 0;
  for (size_t count = 0; i < s.size() && count < n; ++count) {
    ++i;
    while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
  }
  return s.substr(0, i);
}

struct Line {
  int line_no = 0;   // 1-based line of the input file (0: interactive)
  std::string id{};  // --with-id
  std::string text{};
};

// One query's input: the reference splits "id\ttext" (exactly one tab) before anything else.
StatusOr<Line> ParseLine(const std::string& raw, int line_no) {
  Line l{.line_no = line_no, .text = raw};
  if (FLAGS_with_id) {
    const size_t tab = raw.find('\t');
    if (tab == std::string::npos || raw.find('\t', tab + 1) != std::string::npos) {
      return Errorf("--with-id expects 'id<TAB>text' with exactly one tab");
    }
    l.id = raw.substr(0, tab);
    l.text = raw.substr(tab + 1);
    if (l.id.empty() || l.id == "." || l.id == ".." || l.id.find('/') != std::string::npos) {
      return Errorf("query id '%s' cannot name a file", l.id.c_str());
    }
  }
  if (l.text.empty()) return Errorf("empty query");
  return l;
}

StatusOr<std::vector<std::string>> ReadLines(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoError("--input-source: open", path, errno);
  if (S_ISDIR(st.st_mode)) return Errorf("--input-source '%s' is a directory", path.c_str());
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return ErrnoError("--input-source: open", path, errno);
  std::vector<std::string> lines;
  char* buf = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&buf, &cap, f)) >= 0) lines.emplace_back(buf, size_t(n));
  const bool failed = std::ferror(f);
  const int err = errno;
  std::free(buf);
  std::fclose(f);
  if (failed) return ErrnoError("--input-source: read", path, err);
  return lines;
}

class Generator {
 public:
  Generator(const Tokenizer& tok, GenerationSession& session, const ModelConfig& cfg, bool ansi)
      : tok_(tok), session_(session), cfg_(cfg), ansi_(ansi) {}

  // Runs the lines as one batch of queries; returns the number that failed.
  int Process(const std::vector<Line>& lines) {
    struct Pending {
      Line line;
      PromptInput input;
    };
    std::vector<Pending> pending;
    std::vector<Query> queries;
    int failed = 0;
    for (const Line& l : lines) {
      auto in = BuildInput(l.text, tok_, cfg_.max_seq);
      if (!in.ok()) {
        Report(l, in.status());
        ++failed;
        continue;
      }
      // Each query draws from its own stream: line i of a file always gets the same one,
      // whatever the batch size and the other lines; interactive queries count from 1.
      const uint64_t stream = l.line_no > 0 ? uint64_t(l.line_no) : uint64_t(++interactive_);
      queries.push_back({.ids = in->ids, .mode = in->mode, .seed = MixSeed(FLAGS_seed, stream)});
      pending.push_back({l, std::move(in).value()});
    }
    if (queries.empty()) return failed;
    const bool stream =
        !FLAGS_quiet && FLAGS_batch_size == 1 && session_.options().strategy == Strategy::kBase;
    std::map<size_t, QueryResult> done;
    size_t next_print = 0;
    std::vector<int32_t> blank_ids;
    std::string printed;
    GenerationCallbacks cb;
    if (stream) {
      cb.on_blank = [&](size_t q, int blank, int64_t) {
        if (blank == 0) PrintInput(pending[q].input);
        std::printf("%sBlank %d: ", blank == 0 ? "" : "\n", blank + 1);
        blank_ids.clear();
        printed.clear();
        std::fflush(stdout);
      };
      cb.on_token = [&](size_t, int, int32_t token) {
        blank_ids.push_back(token);
        const std::string text = tok_.Decode(blank_ids);
        if (text.starts_with(printed)) std::fputs(text.c_str() + printed.size(), stdout);
        printed = text;
        std::fflush(stdout);
      };
    }
    cb.on_done = [&](size_t q, QueryResult& r) {
      if (stream && r.blanks > 0) std::printf("\n");
      if (!WriteFile(pending[q].line, r)) ++failed;
      done[q] = std::move(r);
      // Print in input order, whatever order the batch finishes in.
      for (auto it = done.find(next_print); it != done.end(); it = done.find(++next_print)) {
        if (!stream) PrintInput(pending[next_print].input);
        Print(pending[next_print], it->second, &failed);
        done.erase(it);
      }
    };
    const auto start = std::chrono::steady_clock::now();
    Status st = session_.Run(queries, cb);
    if (!st.ok()) Die(kTool, st);
    total_seconds_ += Seconds(start);
    return failed;
  }

  void PrintTotal() const {
    if (FLAGS_quiet || total_queries_ < 2) return;
    std::printf("\nTotal: %d queries, %lld tokens in %.2f s, %.2f tokens/s (batch size %d)\n",
                total_queries_, (long long)total_tokens_, total_seconds_,
                total_seconds_ > 0 ? total_tokens_ / total_seconds_ : 0.0, FLAGS_batch_size);
  }

 private:
  void Report(const Line& l, const Status& st) {
    if (l.line_no > 0) {
      std::fprintf(stderr, "%s: error: line %d: %s\n", kTool, l.line_no, st.message().c_str());
    } else {
      std::fprintf(stderr, "%s: error: %s\n", kTool, st.message().c_str());
    }
  }

  void PrintInput(const PromptInput& in) {
    if (!FLAGS_quiet) std::printf("\nInput: %s\n\n", in.text.c_str());
  }

  template <typename P>
  void Print(const P& p, const QueryResult& r, int* failed) {
    if (!r.status.ok()) {
      Report(p.line, r.status);
      ++*failed;
      return;
    }
    const RenderStyle style{.ansi = ansi_, .english = IsAscii(p.input.text), .mode = p.input.mode};
    if (FLAGS_print_all_beams && r.outputs.size() > 1) {
      for (size_t i = 0; i < r.outputs.size(); ++i) {
        const std::string s = RenderOutput(tok_, r.outputs[i], style);
        std::printf("Output beam %zu: %s\n%s", i, s.c_str(), s.size() > 120 ? "\n" : "");
      }
    } else {
      std::printf("Output: %s\n", RenderOutput(tok_, r.outputs[0], style).c_str());
    }
    for (const std::string& n : r.notes) std::fprintf(stderr, "%s: note: %s\n", kTool, n.c_str());
    ++total_queries_;
    total_tokens_ += r.generated_tokens;
    if (!FLAGS_quiet) {
      std::printf(
          "\nTaken time %.2f s: %lld tokens, %.2f tokens/s (%d blank%s, prompt %lld "
          "tokens)\n",
          r.seconds, (long long)r.generated_tokens,
          r.seconds > 0 ? r.generated_tokens / r.seconds : 0.0, r.blanks, r.blanks == 1 ? "" : "s",
          (long long)r.prompt_tokens);
    }
    std::fflush(stdout);
  }

  // One file per query, named as generate.py does: <id>.txt, or the first 20 characters of the
  // text without '/' and the time (timed_name); a name already written by this run gets -2, -3.
  bool WriteFile(const Line& l, const QueryResult& r) {
    if (!r.status.ok()) return true;
    std::string name;
    if (FLAGS_with_id) {
      name = l.id;
    } else {
      std::string prefix;
      for (char c : l.text) {
        if (c != '/') prefix += c;
      }
      char stamp[32];
      const std::time_t now = std::time(nullptr);
      std::tm tm;
      localtime_r(&now, &tm);
      std::strftime(stamp, sizeof stamp, "%m-%d-%H-%M-%S", &tm);
      name = Utf8Prefix(prefix, 20) + "-" + stamp;
    }
    std::string path = FLAGS_output_path + "/" + name + ".txt";
    for (int n = 2; written_.count(path); ++n) {
      path = FLAGS_output_path + "/" + name + "-" + std::to_string(n) + ".txt";
    }
    written_.insert(path);
    FILE* f = std::fopen(path.c_str(), "w");
    bool ok = f != nullptr;
    for (size_t i = 0; ok && i < r.outputs.size(); ++i) {
      const std::string text = tok_.Decode(r.outputs[i].ids) + "\n";
      ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    }
    if (f && std::fclose(f) != 0) ok = false;
    if (!ok) Report(l, ErrnoError("writing the output", path, errno));
    return ok;
  }

  const Tokenizer& tok_;
  GenerationSession& session_;
  const ModelConfig& cfg_;
  bool ansi_;
  int interactive_ = 0;
  int total_queries_ = 0;
  int64_t total_tokens_ = 0;
  double total_seconds_ = 0;
  std::set<std::string> written_;
};

// args: the command line as given (the GPU mode runs it again in glm-generate-gpu).
int Main(std::vector<std::string> args) {
  if (FLAGS_model.empty()) {
    Die(kTool, Errorf("--model is required"),
        "synthesize one: glm-synth --preset demo --output demo.gguf");
  }
  if (FLAGS_tokenizer.empty()) {
    Die(kTool, Errorf("--tokenizer is required"),
        "GLM-130B needs icetk's ice_text.model; the demo model works with "
        "tests/data/tokenizer/demo.model");
  }
  GenerationOptions opts;
  if (FLAGS_sampling_strategy == "BaseStrategy") {
    opts.strategy = Strategy::kBase;
  } else if (FLAGS_sampling_strategy == "BeamSearchStrategy") {
    opts.strategy = Strategy::kBeamSearch;
  } else {
    Die(kTool, Errorf("unknown --sampling-strategy '%s'", FLAGS_sampling_strategy.c_str()),
        "use BaseStrategy or BeamSearchStrategy");
  }
  opts.base = {
      .temperature = float(FLAGS_temperature), .top_k = FLAGS_top_k, .top_p = float(FLAGS_top_p)};
  opts.beam = {.num_beams = FLAGS_num_beams,
               .length_penalty = FLAGS_length_penalty,
               .no_repeat_ngram_size = FLAGS_no_repeat_ngram_size,
               .consider_end = true,
               .deterministic = FLAGS_deterministic};
  opts.min_gen_length = FLAGS_min_gen_length;
  opts.out_seq_length = FLAGS_out_seq_length;
  opts.max_batch = FLAGS_batch_size;
  bool ansi = false;
  if (FLAGS_color == "always") {
    ansi = true;
  } else if (FLAGS_color == "auto") {
    ansi = isatty(STDOUT_FILENO);
  } else if (FLAGS_color != "never") {
    Die(kTool, Errorf("--color must be auto, always or never, got '%s'", FLAGS_color.c_str()));
  }

  StoreOptions store_opts;
  auto host = ParseBytes(FLAGS_host_mem);
  if (!host.ok()) Die(kTool, host.status().WithContext("--host-mem"));
  const bool gpu_all = FLAGS_gpu_mem == "all";
  auto gpu = gpu_all ? StatusOr<uint64_t>(uint64_t(0)) : ParseBytes(FLAGS_gpu_mem);
  if (!gpu.ok()) Die(kTool, gpu.status().WithContext("--gpu-mem"));
  const bool on_gpu = gpu_all || gpu.value() != 0;
  if (on_gpu && FLAGS_huge_pages) {
    Die(kTool, Errorf("--huge-pages applies to weights the CPU reads; drop it with --gpu-mem"));
  }
  store_opts.host_mem_bytes = host.value();
  store_opts.verbose = FLAGS_verbose;
  store_opts.verify_checksums = FLAGS_verify;
  store_opts.huge_pages = FLAGS_huge_pages;
#if !GLM_HAVE_CUDA
  // The GPU mode is glm-generate-gpu: this program, linked with the CUDA libraries, which a CPU
  // run does not load (about 150 MiB of RSS and 80 ms at start). It takes over this process
  // with the same arguments.
  if (on_gpu) {
    const std::string gpu_tool = SiblingProgram("glm-generate-gpu");
    if (access(gpu_tool.c_str(), X_OK) != 0) {
      Die(kTool,
          Errorf("--gpu-mem: this glm-generate was built without the CUDA backend (%s is "
                 "not there)",
                 gpu_tool.c_str()),
          "build where nvcc is installed (CMake finds /usr/local/cuda; see docs/cuda.md), or "
          "drop --gpu-mem to run on the CPU");
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::fflush(nullptr);
    execv(gpu_tool.c_str(), argv.data());
    Die(kTool, ErrnoError("--gpu-mem: cannot run", gpu_tool, errno));
  }
#endif
  {
    Status st = ValidateGenerationOptions(opts);
    if (!st.ok()) Die(kTool, st);
  }
  if (FLAGS_gpu_layers < -1)
    Die(kTool, Errorf("--gpu-layers must be >= -1, got %d", FLAGS_gpu_layers));
#if GLM_HAVE_CUDA
  if (on_gpu) {
    Status st = CudaDeviceAvailable();
    if (!st.ok()) Die(kTool, st.WithContext("--gpu-mem"), "drop --gpu-mem to run on the CPU");
  }
#endif

  // Read the input before loading anything: a bad file fails fast.
  std::vector<Line> lines;
  const bool interactive = FLAGS_input_source == "interactive";
  if (!interactive) {
    auto raw = ReadLines(FLAGS_input_source);
    if (!raw.ok()) Die(kTool, raw.status());
    int bad = 0;
    for (size_t i = 0; i < raw->size(); ++i) {
      const std::string text = Strip((*raw)[i]);
      if (text.empty()) continue;  // generate.py skips empty lines
      auto l = ParseLine(text, int(i) + 1);
      if (!l.ok()) {
        std::fprintf(stderr, "%s: error: line %zu: %s\n", kTool, i + 1,
                     l.status().message().c_str());
        ++bad;
        continue;
      }
      lines.push_back(std::move(l).value());
    }
    if (lines.empty() && bad == 0) {
      Die(kTool, Errorf("--input-source '%s' has no queries (every line is empty)",
                        FLAGS_input_source.c_str()));
    }
    if (lines.empty()) return 1;
  }

  const auto load_start = std::chrono::steady_clock::now();
  const char* kModelHint =
      "convert a checkpoint with glm-quantize or synthesize one with glm-synth";
  // On the CPU: the weight store (mapped or streamed). On the GPU: the file as the GPU tier's
  // layer source; the engine opened below owns it.
  std::unique_ptr<WeightStore> store;
#if GLM_HAVE_CUDA
  std::unique_ptr<LayerSource> gpu_source;
#endif
  ModelConfig cfg;
  if (!on_gpu) {
    // Reading many GB (--huge-pages, or resident layers under --host-mem) takes a while.
    Progress progress(FLAGS_quiet);
    bool loading = false;
    store_opts.load_progress = [&](uint64_t done, uint64_t total) {
      loading = true;
      progress.Update(double(done) / double(total),
                      StrFormat("loading the weights: %.2f of %.2f GB", done / 1e9, total / 1e9));
    };
    auto s = OpenWeightStore(FLAGS_model, store_opts);
    if (loading) progress.Done();
    if (!s.ok()) Die(kTool, s.status().WithContext("--model"), kModelHint);
    store = std::move(s).value();
    const auto* streamed = dynamic_cast<const StreamingStore*>(store.get());
    if (streamed != nullptr && FLAGS_huge_pages && !FLAGS_quiet) {
      NoteHugePageGrant(streamed->stats());
    }
    cfg = store->config();
  } else {
#if GLM_HAVE_CUDA
    if (FLAGS_verify) {  // the GPU tier reads extents without their checksums: check all first
      auto f = GgufFile::Open(FLAGS_model);
      Status st = f.ok() ? f.value()->VerifyAll() : f.status();
      if (!st.ok()) Die(kTool, st.WithContext("--model"), kModelHint);
    }
    auto s = OpenFileLayerSource(FLAGS_model);
    if (!s.ok()) Die(kTool, s.status().WithContext("--model"), kModelHint);
    gpu_source = std::move(s).value();
    cfg = gpu_source->config();
#endif
  }
  auto tok = Tokenizer::Open(FLAGS_tokenizer, cfg.tokens, cfg.vocab);
  if (!tok.ok()) {
    Die(kTool, tok.status().WithContext("--tokenizer"),
        "GLM-130B's tokenizer is icetk's ice_text.model (icetk downloads it to ~/.icetk_models/)");
  }
  if (FLAGS_filter_vocab) opts.banned_ids = tok.value()->NonTextIds(cfg.vocab);
  StatusOr<std::unique_ptr<GenerationSession>> session = Errorf("no engine");
  if (!on_gpu) {
    session = GenerationSession::Create(*store, opts);
  } else {
#if GLM_HAVE_CUDA
    const GpuEngineOptions go{.device = FLAGS_gpu_device,
                              .gpu_mem_bytes = gpu.value(),
                              .host_mem_bytes = host.value(),
                              .max_resident_layers = FLAGS_gpu_layers,
                              .verbose = FLAGS_verbose};
    auto engine = OpenGpuEngine(std::move(gpu_source), go, GenerationShape(cfg, opts));
    if (!engine.ok()) {
      Die(kTool, engine.status().WithContext("--gpu-mem"),
          "a larger --gpu-mem keeps more layers resident; --verbose prints the plan");
    }
    session = GenerationSession::Create(std::move(engine).value(), opts);
#endif
  }
  if (!session.ok()) Die(kTool, session.status());
  std::error_code ec;
  std::filesystem::create_directories(FLAGS_output_path, ec);
  if (ec || !std::filesystem::is_directory(FLAGS_output_path)) {
    Die(kTool, Errorf("--output-path '%s': cannot create the directory: %s",
                      FLAGS_output_path.c_str(), ec ? ec.message().c_str() : "not a directory"));
  }
  if (!FLAGS_quiet) {
    std::string strategy =
        opts.strategy == Strategy::kBase
            ? StrFormat("BaseStrategy temperature=%g top_k=%d top_p=%g", FLAGS_temperature,
                        FLAGS_top_k, FLAGS_top_p)
            : StrFormat(
                  "BeamSearchStrategy num_beams=%d length_penalty=%g "
                  "no_repeat_ngram_size=%d%s",
                  FLAGS_num_beams, FLAGS_length_penalty, FLAGS_no_repeat_ngram_size,
                  FLAGS_deterministic ? " deterministic" : "");
    std::fprintf(stderr,
                 "%s: %s (%s), tokenizer %s (%d pieces), %s, out_seq_length=%d "
                 "min_gen_length=%d, batch %d, seed %llu; on %s; ready in %.2f s\n",
                 kTool, FLAGS_model.c_str(), cfg.ToString().c_str(), FLAGS_tokenizer.c_str(),
                 tok.value()->pieces(), strategy.c_str(), FLAGS_out_seq_length,
                 FLAGS_min_gen_length, FLAGS_batch_size, (unsigned long long)FLAGS_seed,
                 session.value()->engine().Describe().c_str(), Seconds(load_start));
  }

  Generator gen(*tok.value(), *session.value(), cfg, ansi);
  if (!interactive) {
    const int failed = gen.Process(lines);
    gen.PrintTotal();
    return failed > 0 ? 1 : 0;
  }
  // Interactive, as SAT's generate_continually.
  for (;;) {
    std::printf("\nPlease Input Query (stop to exit) >>> ");
    std::fflush(stdout);
    char* buf = nullptr;
    size_t cap = 0;
    const ssize_t n = getline(&buf, &cap, stdin);
    std::string raw = n >= 0 ? std::string(buf, size_t(n)) : "";
    std::free(buf);
    if (n < 0) {
      std::printf("\n");
      return 0;
    }
    const std::string text = Strip(raw);
    if (text.empty()) {
      std::printf("Query should not be empty!\n");
      continue;
    }
    if (text == "stop") return 0;
    auto l = ParseLine(text, 0);
    if (!l.ok()) {
      std::fprintf(stderr, "%s: error: %s\n", kTool, l.status().message().c_str());
      continue;
    }
    gen.Process({l.value()});
  }
}

}  // namespace
}  // namespace glm

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "glm-generate --model FILE --tokenizer ice_text.model [--input-source interactive|FILE]\n"
      "Fills [MASK]/[sMASK] blanks or continues after [gMASK] (appended when the text has no "
      "mask), as GLM-130B's generate.py.");
  std::vector<std::string> args(argv, argv + argc);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc > 1) {
    glm::Die("glm-generate", glm::Errorf("unexpected argument '%s'", argv[1]),
             "queries come from --input-source (interactive or a file)");
  }
  return glm::Main(std::move(args));
}
