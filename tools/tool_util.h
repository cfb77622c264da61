// Shared helpers of the command-line tools: error exit with a hint, progress display, id lists.
#pragma once

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "offload/host_buffer.h"
#include "runtime/check.h"

namespace glm {

// Prints "glm-tool: error: <message>" (and "hint: ..." when given) and exits with status 1.
[[noreturn]] inline void Die(const char* tool, const Status& st, const char* hint = nullptr) {
  std::fprintf(stderr, "%s: error: %s\n", tool, st.message().c_str());
  if (hint) std::fprintf(stderr, "hint: %s\n", hint);
  std::exit(1);
}

// "a, b,,c" -> {"a", "b", "", "c"}: the comma-separated items, spaces trimmed, empty ones kept
// (callers refuse or skip them).
inline std::vector<std::string> SplitItems(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(pos, end - pos);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    out.push_back(std::move(item));
    pos = end + 1;
  }
  return out;
}

// "1,2, 3" -> {1, 2, 3}; errors name the bad item.
inline StatusOr<std::vector<int32_t>> ParseIdList(const std::string& s) {
  std::vector<int32_t> ids;
  for (const std::string& item : SplitItems(s)) {
    char* stop = nullptr;
    const long v = std::strtol(item.c_str(), &stop, 10);
    if (item.empty() || *stop != '\0' || v < 0 || v > INT32_MAX) {
      return Errorf("'%s' is not a token id (expected a comma-separated list of integers)",
                    item.c_str());
    }
    ids.push_back(int32_t(v));
  }
  return ids;
}

// The path of a program installed next to this one (a sibling in the build directory), e.g.
// SiblingProgram("bench-gpu").
inline std::string SiblingProgram(const std::string& name) {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  const std::string path = n > 0 ? std::string(self, size_t(n)) : std::string("./x");
  return path.substr(0, path.rfind('/') + 1) + name;
}

// "24G,48G, 72G" -> the sizes, in order (ParseBytes each); an empty item is an error.
inline StatusOr<std::vector<uint64_t>> ParseByteList(const std::string& s) {
  std::vector<uint64_t> out;
  for (const std::string& item : SplitItems(s)) {
    ASSIGN_OR_RETURN(uint64_t v, ParseBytes(item));
    out.push_back(v);
  }
  return out;
}

// A progress line: redrawn in place on a terminal, at most every ~5% as plain lines otherwise.
class Progress {
 public:
  explicit Progress(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO)) {}
  void Update(double fraction, const std::string& text) {
    if (quiet_) return;
    if (tty_) {
      const int width = 30, filled = int(fraction * width + 0.5);
      std::fprintf(stderr, "\r[%s%s] %5.1f%% %s\033[K", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), fraction * 100, text.c_str());
    } else if (fraction >= next_ || fraction >= 1.0) {
      std::fprintf(stderr, "%5.1f%% %s\n", fraction * 100, text.c_str());
      next_ = fraction + 0.05;
    }
  }
  void Done() {
    if (!quiet_ && tty_) std::fprintf(stderr, "\n");
  }

 private:
  bool quiet_, tty_;
  double next_ = 0;
};

inline double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace glm
