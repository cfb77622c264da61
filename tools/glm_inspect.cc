// glm-inspect: prints a GGUF model file's header, metadata, tensors and extents; verifies
// checksums.
#include <gflags/gflags.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <string>

#include "offload/gguf.h"
#include "runtime/tensor.h"

DEFINE_bool(verify, false, "read every extent and check its xxh64 checksum (exit 1 on mismatch)");
DEFINE_bool(json, false, "print one machine-readable JSON object instead of the text listing");
DEFINE_int32(array_elems, 8, "array elements to print per metadata key; -1 prints all");
DEFINE_bool(verbose, false, "print the effective configuration on stderr first");

namespace glm {
namespace {

std::string HumanBytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? StrFormat("%" PRIu64 " B", n) : StrFormat("%.1f %s", v, units[u]);
}

// Names may come from a hostile file: escape control bytes and broken UTF-8 (unquoted, unlike
// GgufValue::ToString, to keep the tables readable).
std::string Printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t len = Utf8SequenceLength(s, i);
    const bool c1 = len == 2 && c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0;
    if (len == 0 || c1 || c < 0x20 || c == 0x7f) {
      out += StrFormat("\\x%02x", c);
      ++i;
    } else {
      out.append(s, i, len);
      i += len;
    }
  }
  return out;
}

size_t ArrayLimit() {
  return FLAGS_array_elems < 0 ? SIZE_MAX : static_cast<size_t>(FLAGS_array_elems);
}

// ---- JSON ----------------------------------------------------------------------------------

// JSON string with escapes; invalid UTF-8 bytes become U+FFFD so the output always parses.
std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t len = Utf8SequenceLength(s, i);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += StrFormat("\\u%04x", c);
    } else if (len == 0) {
      out += "\\ufffd";
    } else {
      out.append(s, i, len);
      i += len;
      continue;
    }
    ++i;
  }
  return out + "\"";
}

// Doubles print with 17 digits so a reader gets the exact value back (f32 values are exact
// doubles too); non-finite values, which JSON lacks, become strings.
std::string JsonFloat(double v) {
  if (std::isnan(v)) return "\"nan\"";
  if (std::isinf(v)) return v > 0 ? "\"inf\"" : "\"-inf\"";
  return StrFormat("%.17g", v);
}

// 64-bit integers are strings (as in protobuf's JSON mapping): JavaScript numbers lose
// precision above 2^53, and checksums and token ids must survive exactly.
bool IsWide(GgufValueType t) { return t == GgufValueType::kU64 || t == GgufValueType::kI64; }

std::string JsonUInt(uint64_t v, GgufValueType t) {
  if (t == GgufValueType::kBool) return v ? "true" : "false";
  return IsWide(t) ? StrFormat("\"%" PRIu64 "\"", v) : StrFormat("%" PRIu64, v);
}

std::string JsonInt(int64_t v, GgufValueType t) {
  return IsWide(t) ? StrFormat("\"%" PRId64 "\"", v) : StrFormat("%" PRId64, v);
}

std::string JsonValue(const GgufValue& g) {
  std::string out = StrFormat("{\"type\": \"%s\"", GgufValueTypeName(g.type));
  if (g.type == GgufValueType::kArray) {
    const size_t n = g.ArraySize(), shown = std::min(n, ArrayLimit());
    out += StrFormat(", \"elem_type\": \"%s\", \"count\": %zu, \"truncated\": %s, \"values\": [",
                     GgufValueTypeName(g.elem_type), n, shown < n ? "true" : "false");
    for (size_t i = 0; i < shown; ++i) {
      if (i) out += ", ";
      if (auto* a = std::get_if<std::vector<uint64_t>>(&g.v)) out += JsonUInt((*a)[i], g.elem_type);
      if (auto* a = std::get_if<std::vector<int64_t>>(&g.v)) out += JsonInt((*a)[i], g.elem_type);
      if (auto* a = std::get_if<std::vector<double>>(&g.v)) out += JsonFloat((*a)[i]);
      if (auto* a = std::get_if<std::vector<std::string>>(&g.v)) out += JsonString((*a)[i]);
    }
    return out + "]}";
  }
  out += ", \"value\": ";
  if (auto* u = std::get_if<uint64_t>(&g.v)) out += JsonUInt(*u, g.type);
  if (auto* i = std::get_if<int64_t>(&g.v)) out += JsonInt(*i, g.type);
  if (auto* d = std::get_if<double>(&g.v)) out += JsonFloat(*d);
  if (auto* b = std::get_if<bool>(&g.v)) out += *b ? "true" : "false";
  if (auto* s = std::get_if<std::string>(&g.v)) out += JsonString(*s);
  return out + "}";
}

void PrintJson(const GgufFile& f) {
  std::printf(
      "{\n  \"path\": %s,\n  \"version\": %u,\n  \"alignment\": %u,\n"
      "  \"data_offset\": %" PRIu64 ",\n  \"file_size\": %" PRIu64
      ",\n"
      "  \"tensor_count\": %zu,\n  \"metadata\": {",
      JsonString(f.path()).c_str(), f.version(), f.alignment(), f.data_offset(), f.file_size(),
      f.tensors().size());
  const char* sep = "\n";
  for (const auto& [key, value] : f.metadata()) {
    std::printf("%s    %s: %s", sep, JsonString(key).c_str(), JsonValue(value).c_str());
    sep = ",\n";
  }
  std::printf("\n  },\n  \"tensors\": [");
  sep = "\n";
  for (const auto& t : f.tensors()) {
    std::string shape = "[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      shape += (i ? ", " : "") + std::to_string(t.shape[i]);
    }
    std::printf(
        "%s    {\"name\": %s, \"type\": \"%s\", \"type_id\": %u, \"shape\": %s], "
        "\"offset\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"extent\": %d}",
        sep, JsonString(t.name).c_str(), GgmlTypeName(t.type), static_cast<unsigned>(t.type),
        shape.c_str(), t.offset, t.bytes, t.extent);
    sep = ",\n";
  }
  std::printf("\n  ],\n  \"extents\": [");
  sep = "\n";
  for (const auto& x : f.extents()) {
    std::printf("%s    {\"offset\": %" PRIu64 ", \"size\": %" PRIu64 ", \"xxh64\": \"%016" PRIx64
                "\"}",
                sep, x.offset, x.size, x.xxh64);
    sep = ",\n";
  }
  std::printf("\n  ]\n}\n");
}

// ---- text ----------------------------------------------------------------------------------

void PrintText(const GgufFile& f) {
  std::printf("file         %s\n", Printable(f.path()).c_str());
  std::printf("version      %u\n", f.version());
  std::printf("alignment    %u\n", f.alignment());
  std::printf("tensors      %zu\n", f.tensors().size());
  std::printf("data offset  %" PRIu64 "\n", f.data_offset());
  std::printf("file size    %" PRIu64 " (%s)\n", f.file_size(), HumanBytes(f.file_size()).c_str());

  size_t key_w = 3;
  for (const auto& [key, value] : f.metadata())
    key_w = std::max(key_w, std::min<size_t>(key.size(), 48));
  std::printf("\nmetadata (%zu keys)\n", f.metadata().size());
  for (const auto& [key, value] : f.metadata()) {
    std::printf("  %-*s  %-14s %s\n", static_cast<int>(key_w), Printable(key).c_str(),
                value.TypeName().c_str(), value.ToString(ArrayLimit()).c_str());
  }

  size_t name_w = 4;
  for (const auto& t : f.tensors()) name_w = std::max(name_w, t.name.size());
  std::printf("\ntensors (%zu)\n  %5s  %-*s  %-4s  %-22s %14s %14s  %s\n", f.tensors().size(), "#",
              static_cast<int>(name_w), "name", "type", "shape", "offset", "bytes", "extent");
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& t = f.tensors()[i];
    std::printf("  %5zu  %-*s  %-4s  %-22s %14" PRIu64 " %14" PRIu64 "  %d\n", i,
                static_cast<int>(name_w), Printable(t.name).c_str(), GgmlTypeName(t.type),
                ShapeString(t.shape).c_str(), t.offset, t.bytes, t.extent);
  }

  std::printf("\nextents (%zu)\n  %5s  %14s %14s  %-16s  %s\n", f.extents().size(), "#", "offset",
              "size", "xxh64", "tensors");
  for (size_t i = 0; i < f.extents().size(); ++i) {
    const auto& x = f.extents()[i];
    const std::vector<int> in = f.TensorsInExtent(static_cast<int>(i));
    std::string names = "(none)";
    if (!in.empty()) {
      names = Printable(f.tensors()[in.front()].name);
      if (in.size() > 1) {
        names +=
            StrFormat(" .. %s (%zu)", Printable(f.tensors()[in.back()].name).c_str(), in.size());
      }
    }
    std::printf("  %5zu  %14" PRIu64 " %14" PRIu64 "  %016" PRIx64 "  %s\n", i, x.offset, x.size,
                x.xxh64, names.c_str());
  }
  if (f.extents().empty()) std::printf("  (no glmstream.extent.* keys: nothing to verify)\n");
}

// ---- verify --------------------------------------------------------------------------------

int Verify(const GgufFile& f) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto last = start;
  const bool tty = ::isatty(STDERR_FILENO);
  // Redraws in place on a terminal; in logs, one line every 10 s.
  const auto interval = tty ? std::chrono::milliseconds(250) : std::chrono::milliseconds(10000);
  auto line = [&](uint64_t done, uint64_t total) {
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    return StrFormat("verify: %s / %s (%.0f%%), %.2f GB/s", HumanBytes(done).c_str(),
                     HumanBytes(total).c_str(), total ? 100.0 * done / total : 100.0,
                     s > 0 ? done / 1e9 / s : 0.0);
  };
  uint64_t total_bytes = 0;
  Status st = f.VerifyAll([&](uint64_t done, uint64_t total) {
    total_bytes = total;
    const auto now = Clock::now();
    if (now - last < interval) return;
    last = now;
    std::fprintf(stderr, tty ? "\r%s\033[K" : "%s\n", line(done, total).c_str());
  });
  if (tty) std::fprintf(stderr, "\r\033[K");
  if (!st.ok()) {
    std::fprintf(stderr, "glm-inspect: %s\n", st.message().c_str());
    std::fprintf(stderr,
                 "hint: the file is corrupt; re-copy it or regenerate it with glm-quantize\n");
    return 1;
  }
  std::fprintf(stderr, "%s; all %zu extents OK\n", line(total_bytes, total_bytes).c_str(),
               f.extents().size());
  return 0;
}

}  // namespace
}  // namespace glm

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "prints a glmstream GGUF file: header, metadata, tensors and checksummed extents\n"
      "usage: glm-inspect [--verify] [--json] [--array_elems=N] FILE");
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  if (argc != 2) {
    std::fprintf(stderr, "glm-inspect: expected exactly one FILE argument, got %d\n%s\n", argc - 1,
                 gflags::ProgramUsage());
    return 2;
  }
  if (FLAGS_verbose) {
    std::fprintf(stderr, "glm-inspect: file=%s verify=%d json=%d array_elems=%d\n", argv[1],
                 FLAGS_verify, FLAGS_json, FLAGS_array_elems);
  }
  auto f = glm::GgufFile::Open(argv[1]);
  if (!f.ok()) {
    const std::string& msg = f.status().message();
    std::fprintf(stderr, "glm-inspect: %s\n", msg.c_str());
    if (msg.find("not a GGUF file") != std::string::npos) {
      std::fprintf(stderr,
                   "hint: a SAT checkpoint must be converted first: glm-quantize --input "
                   "DIR --output FILE.gguf\n");
    }
    return 1;
  }
  if (FLAGS_json) {
    glm::PrintJson(**f);
  } else {
    glm::PrintText(**f);
  }
  std::fflush(stdout);
  return FLAGS_verify ? glm::Verify(**f) : 0;
}
