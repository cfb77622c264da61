// Two error channels (CONVENTIONS.md): CHECK for bugs (always on, aborts with file:line) and
// Status / StatusOr for everything the environment or the user can cause.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace glm {

// printf-style formatting into a std::string.
std::string StrFormat(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

[[noreturn]] void CheckFailed(const char* file, int line, const char* cond, const std::string& msg);

#define GLM_CHECK(cond)                                                        \
  do {                                                                         \
    if (!(cond)) ::glm::CheckFailed(__FILE__, __LINE__, #cond, std::string()); \
  } while (0)

#define GLM_CHECK_MSG(cond, ...)                                                          \
  do {                                                                                    \
    if (!(cond)) ::glm::CheckFailed(__FILE__, __LINE__, #cond, ::glm::StrFormat(__VA_ARGS__)); \
  } while (0)

// An error the caller can report: a message with full context (path, offset, key, errno text).
// An empty message means OK.
class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(std::string msg) {
    Status s;
    s.msg_ = std::move(msg);
    s.failed_ = true;
    return s;
  }
  bool ok() const { return !failed_; }
  const std::string& message() const { return msg_; }
  // Prepends context ("reading foo.pt: ") to an error; OK stays OK.
  Status WithContext(const std::string& ctx) const {
    return ok() ? *this : Error(ctx + ": " + msg_);
  }

 private:
  std::string msg_;
  bool failed_ = false;
};

// printf-style constructor for errors.
Status Errorf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Error from errno, e.g. ErrnoError("open", path) -> "open 'path': No such file or directory".
Status ErrnoError(const char* what, const std::string& path, int err);

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT
    GLM_CHECK_MSG(!status_.ok(), "StatusOr built from an OK Status without a value");
  }
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & {
    GLM_CHECK_MSG(ok(), "value() of an error: %s", status_.message().c_str());
    return *value_;
  }
  T&& value() && {
    GLM_CHECK_MSG(ok(), "value() of an error: %s", status_.message().c_str());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

#define GLM_CONCAT_INNER(a, b) a##b
#define GLM_CONCAT(a, b) GLM_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::glm::Status _st = (expr);                  \
    if (!_st.ok()) return _st;                   \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr)                                  \
  auto GLM_CONCAT(_sor_, __LINE__) = (expr);                         \
  if (!GLM_CONCAT(_sor_, __LINE__).ok())                             \
    return GLM_CONCAT(_sor_, __LINE__).status();                     \
  lhs = std::move(GLM_CONCAT(_sor_, __LINE__)).value()

}  // namespace glm
