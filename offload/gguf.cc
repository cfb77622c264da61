// GGUF type names and sizes, value printing, and GgufFile's metadata and tensor accessors.
#include "offload/gguf.h"

#include <cinttypes>
#include <cmath>
#include <type_traits>

namespace glm {

const char* GgmlTypeName(GgmlType t) {
  switch (t) {
    case GgmlType::kF32:
      return "F32";
    case GgmlType::kF16:
      return "F16";
    case GgmlType::kI8:
      return "I8";
    case GgmlType::kI32:
      return "I32";
    case GgmlType::kBF16:
      return "BF16";
  }
  return "?";
}

bool IsKnownGgmlType(uint32_t t) {
  switch (static_cast<GgmlType>(t)) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kI8:
    case GgmlType::kI32:
    case GgmlType::kBF16:
      return true;
  }
  return false;
}

size_t GgmlTypeSize(GgmlType t) {
  switch (t) {
    case GgmlType::kF32:
    case GgmlType::kI32:
      return 4;
    case GgmlType::kF16:
    case GgmlType::kBF16:
      return 2;
    case GgmlType::kI8:
      return 1;
  }
  GLM_CHECK_MSG(false, "unknown ggml type %u", static_cast<unsigned>(t));
}

const char* GgufValueTypeName(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8:
      return "u8";
    case GgufValueType::kI8:
      return "i8";
    case GgufValueType::kU16:
      return "u16";
    case GgufValueType::kI16:
      return "i16";
    case GgufValueType::kU32:
      return "u32";
    case GgufValueType::kI32:
      return "i32";
    case GgufValueType::kF32:
      return "f32";
    case GgufValueType::kBool:
      return "bool";
    case GgufValueType::kString:
      return "string";
    case GgufValueType::kArray:
      return "array";
    case GgufValueType::kU64:
      return "u64";
    case GgufValueType::kI64:
      return "i64";
    case GgufValueType::kF64:
      return "f64";
  }
  return nullptr;
}

size_t Utf8SequenceLength(const std::string& s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  if (i >= n) return 0;
  const unsigned char c = p[i];
  if (c < 0x80) return 1;
  const size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                     : c >= 0xe0 && c <= 0xef ? 3
                     : c >= 0xf0 && c <= 0xf4 ? 4
                                              : 0;
  if (len == 0 || i + len > n) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((p[i + k] & 0xc0) != 0x80) return 0;
  }
  // Overlong 3- and 4-byte forms, UTF-16 surrogates, code points past U+10FFFF.
  const unsigned char c1 = p[i + 1];
  if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 >= 0xa0)) return 0;
  if ((c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 >= 0x90)) return 0;
  return len;
}

namespace {

// Quotes a string for display: printable ASCII and well-formed UTF-8 (tokens are often Chinese)
// as is, everything else escaped, so hostile keys cannot put control sequences on a terminal.
std::string Quote(const std::string& s, size_t max_bytes = 256) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    if (i >= max_bytes) {
      out += StrFormat("...\" (%zu bytes)", s.size());
      return out;
    }
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t len = Utf8SequenceLength(s, i);
    // C1 controls (U+0080..U+009F, encoded c2 80..c2 9f) act on some terminals.
    const bool c1_control = len == 2 && c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0;
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (len > 1 && !c1_control) {
      out.append(s, i, len);
      i += len;
      continue;
    } else if (c < 0x20 || c >= 0x7f) {
      out += StrFormat("\\x%02x", c);
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  return out + "\"";
}

// f32 values print with 9 significant digits (enough to round-trip a float), f64 with 17.
std::string FormatFloat(double v, bool is_f32) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return StrFormat(is_f32 ? "%.9g" : "%.17g", v);
}

template <typename T, typename F>
std::string FormatArray(const std::vector<T>& v, size_t max_elems, F fmt) {
  std::string out = "[";
  for (size_t i = 0; i < v.size() && i < max_elems; ++i) {
    if (i) out += ", ";
    out += fmt(v[i]);
  }
  if (v.size() > max_elems) out += StrFormat("%s... (%zu total)", max_elems ? ", " : "", v.size());
  return out + "]";
}

}  // namespace

std::string GgufValue::TypeName() const {
  const char* t = GgufValueTypeName(type);
  if (type != GgufValueType::kArray) return t ? t : "?";
  const char* e = GgufValueTypeName(elem_type);
  return StrFormat("array<%s>", e ? e : "?");
}

size_t GgufValue::ArraySize() const {
  if (type != GgufValueType::kArray) return 0;
  return std::visit(
      [](const auto& x) -> size_t {
        using X = std::decay_t<decltype(x)>;
        if constexpr (requires { x.size(); } && !std::is_same_v<X, std::string>) {
          return x.size();
        } else {
          return 0;
        }
      },
      v);
}

std::string GgufValue::ToString(size_t max_elems) const {
  const bool f32 = type == GgufValueType::kF32 ||
                   (type == GgufValueType::kArray && elem_type == GgufValueType::kF32);
  const bool boolean = type == GgufValueType::kArray && elem_type == GgufValueType::kBool;
  return std::visit(
      [&](const auto& x) -> std::string {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, uint64_t>) {
          return StrFormat("%" PRIu64, x);
        } else if constexpr (std::is_same_v<X, int64_t>) {
          return StrFormat("%" PRId64, x);
        } else if constexpr (std::is_same_v<X, double>) {
          return FormatFloat(x, f32);
        } else if constexpr (std::is_same_v<X, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<X, std::string>) {
          return Quote(x);
        } else if constexpr (std::is_same_v<X, std::vector<uint64_t>>) {
          return FormatArray(x, max_elems, [&](uint64_t e) {
            return boolean ? std::string(e ? "true" : "false") : StrFormat("%" PRIu64, e);
          });
        } else if constexpr (std::is_same_v<X, std::vector<int64_t>>) {
          return FormatArray(x, max_elems, [](int64_t e) { return StrFormat("%" PRId64, e); });
        } else if constexpr (std::is_same_v<X, std::vector<double>>) {
          return FormatArray(x, max_elems, [&](double e) { return FormatFloat(e, f32); });
        } else {
          static_assert(std::is_same_v<X, std::vector<std::string>>);
          return FormatArray(x, max_elems, [](const std::string& e) { return Quote(e, 64); });
        }
      },
      v);
}

// ---- GgufFile accessors (parsing and verification: gguf_reader.cc) ----

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

namespace {
Status TypeError(const std::string& path, const std::string& key, const GgufValue& v,
                 const char* want) {
  return Errorf("%s: metadata key '%s' is %s, expected %s", path.c_str(), key.c_str(),
                v.TypeName().c_str(), want);
}
}  // namespace

StatusOr<uint64_t> GgufFile::GetUInt(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Errorf("%s: metadata key '%s' not found", path_.c_str(), key.c_str());
  if (auto* u = std::get_if<uint64_t>(&v->v)) return *u;
  if (auto* i = std::get_if<int64_t>(&v->v)) {
    if (*i >= 0) return static_cast<uint64_t>(*i);
    return Errorf("%s: metadata key '%s' is %" PRId64 ", expected a value >= 0", path_.c_str(),
                  key.c_str(), *i);
  }
  return TypeError(path_, key, *v, "an unsigned integer");
}

StatusOr<int64_t> GgufFile::GetInt(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Errorf("%s: metadata key '%s' not found", path_.c_str(), key.c_str());
  if (auto* i = std::get_if<int64_t>(&v->v)) return *i;
  if (auto* u = std::get_if<uint64_t>(&v->v)) {
    if (*u <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(*u);
    return Errorf("%s: metadata key '%s' = %" PRIu64 " does not fit in int64", path_.c_str(),
                  key.c_str(), *u);
  }
  return TypeError(path_, key, *v, "an integer");
}

StatusOr<double> GgufFile::GetFloat(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Errorf("%s: metadata key '%s' not found", path_.c_str(), key.c_str());
  if (auto* d = std::get_if<double>(&v->v)) return *d;
  return TypeError(path_, key, *v, "f32 or f64");
}

StatusOr<std::string> GgufFile::GetString(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Errorf("%s: metadata key '%s' not found", path_.c_str(), key.c_str());
  if (auto* s = std::get_if<std::string>(&v->v)) return *s;
  return TypeError(path_, key, *v, "string");
}

StatusOr<std::vector<uint64_t>> GgufFile::GetArrayUInt(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Errorf("%s: metadata key '%s' not found", path_.c_str(), key.c_str());
  if (v->type == GgufValueType::kArray && v->elem_type != GgufValueType::kBool) {
    if (auto* a = std::get_if<std::vector<uint64_t>>(&v->v)) return *a;
    if (auto* a = std::get_if<std::vector<int64_t>>(&v->v)) {
      std::vector<uint64_t> out;
      out.reserve(a->size());
      for (int64_t e : *a) {
        if (e < 0) {
          return Errorf("%s: metadata key '%s' has negative element %" PRId64, path_.c_str(),
                        key.c_str(), e);
        }
        out.push_back(static_cast<uint64_t>(e));
      }
      return out;
    }
  }
  return TypeError(path_, key, *v, "an array of unsigned integers");
}

const GgufTensorInfo* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<int> GgufFile::TensorsInExtent(int i) const {
  std::vector<int> out;
  for (size_t k = 0; k < tensors_.size(); ++k) {
    if (tensors_[k].extent == i) out.push_back(static_cast<int>(k));
  }
  return out;
}

}  // namespace glm
