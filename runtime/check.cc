// Implementation of the CHECK failure path and Status helpers.
#include "runtime/check.h"

#include <cstring>

namespace glm {
namespace {

std::string VStrFormat(const char* fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap);
  std::string out(n > 0 ? n : 0, '\0');
  if (n > 0) std::vsnprintf(out.data(), out.size() + 1, fmt, ap2);
  va_end(ap2);
  return out;
}

}  // namespace

std::string StrFormat(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string out = VStrFormat(fmt, ap);
  va_end(ap);
  return out;
}

Status Errorf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string out = VStrFormat(fmt, ap);
  va_end(ap);
  return Status::Error(std::move(out));
}

void CheckFailed(const char* file, int line, const char* cond, const std::string& msg) {
  std::fprintf(stderr, "%s:%d: CHECK failed: %s%s%s\n", file, line, cond, msg.empty() ? "" : ": ",
               msg.c_str());
  std::fflush(stderr);
  std::abort();
}

Status ErrnoError(const char* what, const std::string& path, int err) {
  return Status::Error(StrFormat("%s '%s': %s", what, path.c_str(), std::strerror(err)));
}

}  // namespace glm
