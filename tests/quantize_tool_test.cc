// The real glm-quantize and glm-synth binaries: --resume after a SIGKILL gives a file identical
// to an uninterrupted run; a full disk (ENOSPC, a size-limited tmpfs in a user namespace) gives a
// clear error and no output file; synthetic SAT checkpoints load in torch and in our reader.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "offload/gguf.h"
#include "quant/sat_checkpoint.h"
#include "quant/synthetic.h"
#include "quant/zip.h"
#include "tests/test_util.h"

extern char** environ;

namespace glm {
namespace {

const std::string kBin = GLM_BINARY_DIR;

struct Result {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string output;  // stdout and stderr
};

// Runs argv with extra environment entries; output captured through a file.
Result Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
             const std::string& log) {
  std::vector<std::string> envs(env);
  for (char** e = environ; *e; ++e) envs.push_back(*e);
  std::vector<char*> a, e;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  for (const auto& s : envs) e.push_back(const_cast<char*>(s.c_str()));
  e.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid;
  Result r;
  if (posix_spawn(&pid, a[0], &fa, nullptr, a.data(), e.data()) != 0) {
    r.output = "spawn failed: " + argv[0];
    return r;
  }
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  return r;
}

bool Exists(const std::string& p) { return access(p.c_str(), F_OK) == 0; }

std::string Slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A synthetic SAT checkpoint big enough that every layer extent (int8, 12 MiB) is larger than
// the writer's 8 MiB buffer, so a kill leaves whole extents on disk.
TEST(QuantizeTool, ResumeAfterKillIsByteIdentical) {
  test::TempDir dir;
  const std::string ckpt = dir.File("ckpt");
  Result s = Spawn({kBin + "/glm-synth", "--format", "sat", "--tp", "2", "--preset", "small",
                    "--layers", "3", "--vocab", "1024", "--output", ckpt, "--quiet"},
                   {}, dir.File("synth.log"));
  ASSERT_EQ(s.exit_code, 0) << s.output;
  const std::vector<std::string> args = {
      kBin + "/glm-quantize",
      "--input",
      ckpt,
      "--bits",
      "8",
      "--tp",
      "2",
      "--quiet",
      "--special-tokens",
      "mask=1016,gmask=1017,smask=1018,sop=1020,eop=1021,eos=1022"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = args;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const std::string full = dir.File("full.gguf"), resumed = dir.File("resumed.gguf");
  Result r = Spawn(with({"--output", full}), {}, dir.File("full.log"));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // Killed (SIGKILL, no cleanup) after 4 of the 7 extents were converted and journaled.
  r = Spawn(with({"--output", resumed}), {"GLM_QUANTIZE_TEST_KILL_AFTER=4"}, dir.File("kill.log"));
  ASSERT_EQ(r.signal, SIGKILL) << "exit " << r.exit_code << ": " << r.output;
  ASSERT_FALSE(Exists(resumed));
  ASSERT_TRUE(Exists(resumed + ".partial"));
  ASSERT_TRUE(Exists(resumed + ".partial.journal"));

  r = Spawn(with({"--output", resumed, "--resume"}), {}, dir.File("resume.log"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::printf("%s", r.output.c_str());
  int reused = -1;
  const size_t at = r.output.find(" reused by --resume");
  ASSERT_NE(at, std::string::npos) << "nothing was reused: " << r.output;
  reused = std::atoi(r.output.c_str() + r.output.rfind(", ", at) + 2);
  EXPECT_GE(reused, 2);  // the globals and at least one layer shard were on disk
  EXPECT_LE(reused, 4);
  EXPECT_TRUE(Slurp(full) == Slurp(resumed)) << "resumed file differs from an uninterrupted run";
  EXPECT_FALSE(Exists(resumed + ".partial"));
  EXPECT_FALSE(Exists(resumed + ".partial.journal"));
  EXPECT_FALSE(Exists(resumed + ".prev"));
  auto f = GgufFile::Open(resumed);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f.value()->VerifyAll().ok());

  // A journal for other options is not used: --resume with --bits 4 starts over (and succeeds).
  r = Spawn(with({"--output", dir.File("other.gguf")}), {"GLM_QUANTIZE_TEST_KILL_AFTER=2"},
            dir.File("kill2.log"));
  ASSERT_EQ(r.signal, SIGKILL);
  std::vector<std::string> other = {kBin + "/glm-quantize",
                                    "--input",
                                    ckpt,
                                    "--bits",
                                    "4",
                                    "--tp",
                                    "2",
                                    "--quiet",
                                    "--resume",
                                    "--output",
                                    dir.File("other.gguf"),
                                    "--special-tokens",
                                    "mask=1016,gmask=1017,smask=1018,sop=1020,eop=1021,eos=1022"};
  r = Spawn(other, {}, dir.File("other.log"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("reused"), std::string::npos) << r.output;
}

// ENOSPC: the output directory is a 1 MiB tmpfs mounted in a private user+mount namespace.
TEST(QuantizeTool, DiskFullGivesClearErrorAndNoFile) {
  test::TempDir dir, logs;  // the logs stay outside the mount
  Result probe = Spawn({"/usr/bin/unshare", "-rm", "/bin/sh", "-c",
                        "mount -t tmpfs -o size=1m none " + dir.path() + " && echo mounted"},
                       {}, logs.File("probe.log"));
  if (probe.exit_code != 0 || probe.output.find("mounted") == std::string::npos) {
    GTEST_SKIP() << "cannot mount a tmpfs in a user namespace here: " << probe.output;
  }
  const std::string ckpt = std::string(GLM_SOURCE_DIR) + "/tests/golden/tiny/ckpt";
  const std::string script =
      "mount -t tmpfs -o size=1m none " + dir.path() + " && " + kBin + "/glm-quantize --input " +
      ckpt + " --output " + dir.path() +
      "/out.gguf --bits 8 --quiet --special-tokens "
      "mask=1000,gmask=1001,smask=1002,sop=1004,eop=1005,eos=2; echo \"exit=$?\"; ls -a " +
      dir.path();
  Result r =
      Spawn({"/usr/bin/unshare", "-rm", "/bin/sh", "-c", script}, {}, logs.File("enospc.log"));
  std::printf("%s", r.output.c_str());
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("hint: free disk space"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("exit=1"), std::string::npos) << r.output;
  const size_t ls = r.output.find("exit=1");
  ASSERT_NE(ls, std::string::npos);
  EXPECT_EQ(r.output.find("out.gguf", ls), std::string::npos) << "a file was left: " << r.output;
}

// glm-synth --format sat: torch.load reads every rank file, and torch's merge (convert_tp.py's
// rules in glm_reference.py) gives the bytes our reader's merge gives, for TP 1, 2 and 4.
TEST(QuantizeTool, SyntheticSatLoadsInTorch) {
  test::TempDir dir;
  Result has_torch = Spawn({"/usr/bin/python3", "-c", "import torch"}, {}, dir.File("probe.log"));
  if (has_torch.exit_code != 0)
    GTEST_SKIP() << "/usr/bin/python3 has no torch: " << has_torch.output;
  const std::string py =
      "import sys, zlib, torch\n"
      "sys.path.insert(0, '" GLM_SOURCE_DIR
      "/tests/golden')\n"
      "import glm_reference as ref\n"
      "for d in sys.argv[1:]:\n"
      "    for k, t in ref.load_sat_checkpoint(d).items():\n"
      "        print(d, k, '%08x' % "
      "(zlib.crc32(t.contiguous().view(torch.int16).numpy().tobytes()) & 0xffffffff))\n";
  std::vector<std::string> cmd = {"/usr/bin/python3", "-c", py};
  for (int tp : {1, 2, 4}) {
    const std::string ckpt = dir.File(StrFormat("tp%d", tp));
    Result s = Spawn({kBin + "/glm-synth", "--format", "sat", "--tp", std::to_string(tp),
                      "--preset", "tiny", "--output", ckpt, "--quiet"},
                     {}, dir.File("synth.log"));
    ASSERT_EQ(s.exit_code, 0) << s.output;
    cmd.push_back(ckpt);
  }
  Result r = Spawn(cmd, {}, dir.File("py.log"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, std::unique_ptr<SatCheckpoint>> cks;
  std::map<std::string, int> per_dir;
  std::map<std::string, std::string> crc_of_key;
  std::istringstream lines(r.output);
  std::string d, key, crc;
  while (lines >> d >> key >> crc) {
    if (!cks.count(d)) {
      auto ck = SatCheckpoint::Open(d);
      ASSERT_TRUE(ck.ok()) << ck.status().message();
      cks[d] = std::move(ck).value();
    }
    const SatTensorInfo* t = cks[d]->Find(key);
    ASSERT_NE(t, nullptr) << key;
    int64_t numel = 1;
    for (int64_t x : t->shape) numel *= x;
    std::vector<Half> buf(static_cast<size_t>(numel));
    ASSERT_TRUE(cks[d]->ReadMerged(key, DType::kF16, buf.data(), buf.size() * 2).ok());
    EXPECT_EQ(StrFormat("%08x", Crc32(buf.data(), buf.size() * 2)), crc) << d << " " << key;
    EXPECT_EQ(buf[7].bits, SyntheticSatValue(1, key, t->shape, 7).bits) << key;
    // The same model at every TP degree.
    if (crc_of_key.count(key)) {
      EXPECT_EQ(crc_of_key[key], crc) << d << " " << key;
    }
    crc_of_key[key] = crc;
    ++per_dir[d];
  }
  ASSERT_EQ(per_dir.size(), 3u) << r.output;
  for (const auto& [dir_name, n] : per_dir) {
    EXPECT_EQ(n, 3 + 2 * 13) << dir_name;  // 3 model-level keys, 13 per layer (with inv_freq)
  }
  EXPECT_EQ(cks[dir.File("tp4")]->tp(), 4);
}

}  // namespace
}  // namespace glm
