// glm-generate as users run it: a small synthetic model with GLM-130B's tokenizer layout and the
// demo SentencePiece model; file input (reference file names, --with-id, beams, batches equal to
// single runs, seeds), bad input (clear message, exit status 1, never a signal), and the
// interactive mode driven through a pseudo-terminal.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "quant/synthetic.h"
#include "tests/test_util.h"

namespace glm {
namespace {

namespace fs = std::filesystem;

const std::string kTool = std::string(GLM_BINARY_DIR) + "/glm-generate";
const std::string kTokenizer = std::string(GLM_SOURCE_DIR) + "/tests/data/tokenizer/demo.model";

using test::Quote;
using test::ToolRun;

ToolRun Exec(const std::string& args) { return test::RunTool(kTool, args); }

using test::ReadFile;

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  if (!fs::is_directory(dir)) return names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// 300 words: far more than the test model's 256 tokens.
std::string LongText() {
  std::string s;
  for (int i = 0; i < 300; ++i) s += "memory ";
  return s + "[MASK].";
}

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    Status st = WriteSyntheticModel(dir_->File("model.gguf"), test::CliModelConfig(), 7);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  static void TearDownTestSuite() { delete dir_; }

  void SetUp() override {
    if (!fs::exists(kTool)) GTEST_SKIP() << kTool << " is not built";
  }

  static std::string Model() { return dir_->File("model.gguf"); }
  static std::string Base() {
    return "--model " + Quote(Model()) + " --tokenizer " + Quote(kTokenizer);
  }
  // Writes an input file in a fresh directory; returns its path.
  std::string Input(const std::string& name, const std::string& text) {
    const std::string path = dir_->File(name);
    std::ofstream(path) << text;
    return path;
  }

  static test::TempDir* dir_;
};
test::TempDir* Cli::dir_ = nullptr;

TEST_F(Cli, FileInputWritesOneFilePerQueryNamedAsTheReference) {
  const std::string in = Input("plain.txt",
                               "The capital of France is [MASK].\n\n  \nMemory is slow compared "
                               "with the processor\n");
  const std::string out = dir_->File("plain_out");
  ToolRun r =
      Exec(Base() + " --input-source " + in + " --output-path " + out + " --out-seq-length 48");
  ASSERT_TRUE(r.exited(0)) << r.out;
  EXPECT_NE(r.out.find("Input: The capital of France is [MASK]."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Input: Memory is slow compared with the processor [gMASK]"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("Blank 1: "), std::string::npos) << r.out;    // streamed tokens
  EXPECT_NE(r.out.find("Taken time "), std::string::npos) << r.out;  // per-query summary
  EXPECT_NE(r.out.find("tokens/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Total: 2 queries"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\033["), std::string::npos) << "ANSI codes on a pipe";
  // timed_name: the first 20 characters, '/' removed, then -%m-%d-%H-%M-%S.txt.
  const std::vector<std::string> files = ListDir(out);
  ASSERT_EQ(files.size(), 2u) << r.out;
  const std::string stamp = "-\\d\\d-\\d\\d-\\d\\d-\\d\\d-\\d\\d\\.txt";
  EXPECT_TRUE(std::regex_match(files[0], std::regex("Memory is slow compa" + stamp))) << files[0];
  EXPECT_TRUE(std::regex_match(files[1], std::regex("The capital of Franc" + stamp))) << files[1];
  // One line per answer; the filled text keeps the context around the blank.
  const std::string answer = ReadFile(out + "/" + files[1]);
  EXPECT_EQ(std::count(answer.begin(), answer.end(), '\n'), 1) << answer;
  EXPECT_EQ(answer.rfind("The capital of France is", 0), 0u) << answer;
  EXPECT_EQ(answer.substr(answer.size() - 2), ".\n") << answer;
}

TEST_F(Cli, WithIdAndBeamsWriteEveryBeam) {
  const std::string in = Input("ids.txt", "q1\tA cache is [MASK].\nq2\tThreads share memory\n");
  const std::string out = dir_->File("ids_out");
  ToolRun r = Exec(Base() + " --input-source " + in + " --output-path " + out +
                   " --with-id --sampling-strategy BeamSearchStrategy --num-beams 3"
                   " --length-penalty 1.0 --no-repeat-ngram-size 3 --min-gen-length 2"
                   " --print-all-beams --out-seq-length 32");
  ASSERT_TRUE(r.exited(0)) << r.out;
  EXPECT_EQ(ListDir(out), (std::vector<std::string>{"q1.txt", "q2.txt"}));
  for (const char* f : {"/q1.txt", "/q2.txt"}) {
    const std::string text = ReadFile(out + f);
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;
  }
  EXPECT_EQ(ReadFile(out + "/q1.txt").rfind("A cache is", 0), 0u);
  EXPECT_NE(r.out.find("Output beam 0: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Output beam 2: "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Blank 1: "), std::string::npos) << "beam search does not stream";
}

// The same queries with --batch-size 1 and 3 (one weight pass per step for the batch) give the
// same files; --seed reproduces a run and another seed changes it. Underscore spellings work.
TEST_F(Cli, BatchesEqualSingleRunsAndSeedsReproduce) {
  const std::string in = Input("batch.txt",
                               "a\tThe processor fetches an [MASK] from memory.\n"
                               "b\tA cache keeps [MASK] of recent data and [MASK] them.\n"
                               "c\tBeam search keeps several candidates\n"
                               "d\t[sMASK] is faster than a network.\n"
                               "e\tTests state a precise [MASK].\n");
  auto run = [&](const std::string& name, const std::string& extra) {
    const std::string out = dir_->File(name);
    ToolRun r =
        Exec(Base() + " --input-source " + in + " --output-path " + out +
             " --with-id --out-seq-length 40 --temperature 0.9 --top_k 40 --top_p 0.95 " + extra);
    EXPECT_TRUE(r.exited(0)) << r.out;
    std::string all;
    for (const std::string& f : ListDir(out)) all += f + ": " + ReadFile(out + "/" + f);
    return all;
  };
  const std::string single = run("b1", "--batch-size 1 --seed 5");
  EXPECT_EQ(single, run("b3", "--batch-size 3 --seed 5 --quiet"));
  EXPECT_EQ(single, run("b5", "--batch-size 5 --seed 5"));
  EXPECT_NE(single, run("s6", "--batch-size 3 --seed 6"));
  // The weights read into memory on huge pages, not mapped: the same answers.
  EXPECT_EQ(single, run("hp", "--batch-size 3 --seed 5 --huge-pages"));
  EXPECT_EQ(single, run("hp_budget", "--batch-size 2 --seed 5 --huge-pages --host-mem 1G"));
  EXPECT_EQ(std::count(single.begin(), single.end(), '\n'), 5);
}

struct BadCase {
  const char* what;
  std::string args;
  const char* message;
};

TEST_F(Cli, BadInputIsAClearErrorAndExitStatusOne) {
  const std::string good = Input("good.txt", "Memory is [MASK].\n");
  const std::string out = " --output-path " + dir_->File("bad_out");
  std::ofstream(dir_->File("junk.model")) << "not a model";
  std::ofstream(dir_->File("a_file")) << "x";
  // The model with one byte of its last extent flipped: found by --verify only.
  const std::string corrupt = dir_->File("corrupt.gguf");
  fs::copy_file(Model(), corrupt, fs::copy_options::overwrite_existing);
  {
    std::fstream io(corrupt, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(-100, std::ios::end);
    char c = 0;
    io.read(&c, 1);
    c = char(c ^ 0x5a);
    io.seekp(-100, std::ios::end);
    io.write(&c, 1);
  }
  // A TP=2 conversion: only the mapped store runs it, so --huge-pages (a read into memory) is
  // refused, saying so.
  const std::string tp2 = dir_->File("tp2.gguf");
  const ToolRun q = test::RunTool(
      std::string(GLM_BINARY_DIR) + "/glm-quantize",
      "--input " + Quote(Model()) + " --output " + Quote(tp2) + " --tp 2 --quiet --force");
  ASSERT_TRUE(q.exited(0)) << q.out;
  const std::vector<BadCase> cases = {
      {"huge pages on a TP=2 file",
       "--model " + Quote(tp2) + " --tokenizer " + kTokenizer + " --huge-pages --input-source " +
           good + out,
       "without --huge-pages the file is mapped"},
      {"no model flag", "--tokenizer " + kTokenizer + " --input-source " + good,
       "--model is required"},
      {"missing model",
       "--model " + dir_->File("nope.gguf") + " --tokenizer " + kTokenizer + " --input-source " +
           good + out,
       "nope.gguf"},
      {"no tokenizer flag", "--model " + Model() + " --input-source " + good,
       "--tokenizer is required"},
      {"missing tokenizer",
       "--model " + Model() + " --tokenizer " + dir_->File("ice_text.model") + " --input-source " +
           good + out,
       "ice_text.model"},
      {"junk tokenizer",
       "--model " + Model() + " --tokenizer " + dir_->File("junk.model") + " --input-source " +
           good + out,
       "not a SentencePiece model"},
      {"tokenizer as model",
       "--model " + kTokenizer + " --tokenizer " + kTokenizer + " --input-source " + good + out,
       "--model"},
      {"missing input", Base() + " --input-source " + dir_->File("none.txt") + out, "No such file"},
      {"input is a directory", Base() + " --input-source " + dir_->path() + out, "is a directory"},
      {"empty input", Base() + " --input-source " + Input("empty.txt", "\n \n\t\n") + out,
       "has no queries"},
      {"no tab with --with-id", Base() + " --with-id --input-source " + good + out,
       "line 1: --with-id expects"},
      {"bad strategy", Base() + " --sampling-strategy Greedy --input-source " + good + out,
       "unknown --sampling-strategy"},
      {"bad size", Base() + " --host-mem 12Q --input-source " + good + out, "--host-mem"},
      {"bad GPU size", Base() + " --gpu-mem 12Q --input-source " + good + out, "--gpu-mem"},
      {"huge pages on the GPU", Base() + " --gpu-mem 1G --huge-pages --input-source " + good + out,
       "--huge-pages applies to weights the CPU reads"},
      {"bad GPU layer count", Base() + " --gpu-layers -2 --input-source " + good + out,
       "--gpu-layers must be >= -1"},
      {"zero temperature", Base() + " --temperature 0 --input-source " + good + out,
       "temperature must be > 0"},
      {"zero beams",
       Base() +
           " --sampling-strategy BeamSearchStrategy --num-beams 0"
           " --input-source " +
           good + out,
       "num-beams must be >= 1"},
      {"output path is a file",
       Base() + " --input-source " + good + " --output-path " + dir_->File("a_file"),
       "--output-path"},
      {"unknown flag", Base() + " --input-source " + good + " --top-q 3" + out, "top-q"},
      {"stray argument", Base() + " --input-source " + good + " hello" + out,
       "unexpected argument"},
      {"checksum mismatch",
       "--model " + corrupt + " --tokenizer " + kTokenizer + " --verify" + " --input-source " +
           good + out,
       "checksum mismatch"},
  };
  for (const BadCase& c : cases) {
    ToolRun r = Exec(c.args);
    EXPECT_FALSE(WIFSIGNALED(r.status)) << c.what << ": killed by a signal\n" << r.out;
    EXPECT_TRUE(r.exited(1)) << c.what << ": status " << r.status << "\n" << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.what << ":\n" << r.out;
  }
}

// A line too long for the model fails alone: the others are still answered, the exit status
// says something failed.
TEST_F(Cli, TooLongLineFailsAloneWithStatusOne) {
  const std::string in = Input("long.txt", LongText() + "\nMemory is [MASK].\n");
  const std::string out = dir_->File("long_out");
  ToolRun r = Exec(Base() + " --input-source " + in + " --output-path " + out);
  EXPECT_TRUE(r.exited(1)) << r.out;
  EXPECT_NE(r.out.find("line 1: text too long"), std::string::npos) << r.out;
  EXPECT_EQ(ListDir(out).size(), 1u);
  EXPECT_NE(r.out.find("Input: Memory is [MASK]."), std::string::npos) << r.out;
}

// ---------------------------------------------------------------------------------------------
// Interactive mode through a pseudo-terminal: the real binary, its prompt, refusals, errors that
// do not end the loop, a generation with marked spans, and "stop".

class Pty {
 public:
  explicit Pty(const std::vector<std::string>& args) {
    pid_ = forkpty(&fd_, nullptr, nullptr, nullptr);
    GLM_CHECK(pid_ >= 0);
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~Pty() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(fd_);
  }
  // Reads until `text` appears after the read position; returns what was read up to its end.
  std::string Expect(const std::string& text, int timeout_s = 60) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    for (;;) {
      const size_t at = buf_.find(text, pos_);
      if (at != std::string::npos) {
        std::string got = buf_.substr(pos_, at + text.size() - pos_);
        pos_ = at + text.size();
        return got;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || poll(&p, 1, int(left)) <= 0) break;
      char b[4096];
      const ssize_t n = read(fd_, b, sizeof b);
      if (n <= 0) break;
      buf_.append(b, size_t(n));
    }
    ADD_FAILURE() << "timed out waiting for '" << text << "'; got:\n" << buf_.substr(pos_);
    return "";
  }
  void Send(const std::string& line) {
    const std::string s = line + "\n";
    GLM_CHECK(write(fd_, s.data(), s.size()) == ssize_t(s.size()));
  }
  // The child's wait status, or -1 if it is still running after 60 s.
  int Wait() {
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      char b[4096];
      pollfd p{fd_, POLLIN, 0};
      // Drain output so that the child never blocks on a full pty.
      if (poll(&p, 1, 100) > 0 && read(fd_, b, sizeof b) > 0) continue;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return status;
      }
      usleep(10000);  // the pty hung up before the exit: poll no longer waits
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  bool reaped_ = false;
  std::string buf_;
  size_t pos_ = 0;
};

TEST_F(Cli, InteractiveThroughAPseudoTerminal) {
  const char* prompt = "Please Input Query (stop to exit) >>> ";
  Pty pty({kTool, "--model", Model(), "--tokenizer", kTokenizer, "--output-path",
           dir_->File("tty_out"), "--out-seq-length", "40"});
  pty.Expect(prompt);
  pty.Send("   ");
  pty.Expect("Query should not be empty!");
  pty.Expect(prompt);
  pty.Send(LongText());
  pty.Expect("text too long");  // reported, and the loop goes on
  pty.Expect(prompt);
  pty.Send("The capital of France is [MASK].");
  pty.Expect("Input: The capital of France is [MASK].");
  pty.Expect("Blank 1: ");
  const std::string output = pty.Expect("Taken time");
  // On a terminal the span is green and underlined, as generate.py prints it.
  EXPECT_NE(output.find("Output: The capital of France is \x1b[0;32m\033[4m"), std::string::npos)
      << output;
  pty.Expect(prompt);
  pty.Send("Memory is slow");  // [gMASK]: underline only
  const std::string g = pty.Expect("Taken time");
  EXPECT_NE(g.find("Output: Memory is slow \033[4m"), std::string::npos) << g;
  pty.Expect(prompt);
  pty.Send("stop");
  const int status = pty.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(ListDir(dir_->File("tty_out")).size(), 2u);
}

TEST_F(Cli, InteractiveEndsAtEndOfInput) {
  Pty pty({kTool, "--model", Model(), "--tokenizer", kTokenizer, "--output-path",
           dir_->File("eof_out")});
  pty.Expect("Please Input Query (stop to exit) >>> ");
  pty.Send("\x04");  // Ctrl-D on an empty line
  const int status = pty.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace glm
