// glm-bench's results (report.h).
#include "tools/glm_bench/report.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <fstream>

#include "offload/host_buffer.h"
#include "runtime/check.h"
#include "runtime/parallel.h"
#include "tools/tool_util.h"

namespace glm {
namespace {

std::string ReadFirstLine(const std::string& path, const std::string& prefix = "") {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, prefix.size(), prefix) == 0) {
      const size_t colon = prefix.empty() ? std::string::npos : line.find(':');
      std::string v = colon == std::string::npos ? line : line.substr(colon + 1);
      while (!v.empty() && v.front() == ' ') v.erase(v.begin());
      return v;
    }
  }
  return "";
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += StrFormat("\\u%04x", c);
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string MachineLine(const std::string& path) {
  utsname u{};
  uname(&u);
  std::string disk = "?";
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    const std::string sys = StrFormat("/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
    char target[512] = {0};
    if (readlink(sys.c_str(), target, sizeof(target) - 1) > 0) {
      disk = target;
      disk = disk.substr(disk.rfind('/') + 1);
      const std::string model = ReadFirstLine("/sys/class/block/" + disk + "/device/model");
      const std::string rot = ReadFirstLine("/sys/class/block/" + disk + "/queue/rotational");
      if (!model.empty()) disk += " (" + model + ")";
      if (rot == "0") disk += " non-rotational";
    }
  }
  char date[64];
  const time_t now = time(nullptr);
  strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
  return StrFormat(
      "%s; %ld cores (%d compute threads); RAM %s; Linux %s; disk %s; %s; load %s",
      ReadFirstLine("/proc/cpuinfo", "model name").c_str(), sysconf(_SC_NPROCESSORS_ONLN),
      ThreadPool::Global().size(),
      FormatBytes(std::strtoull(ReadFirstLine("/proc/meminfo", "MemTotal").c_str(), nullptr, 10) *
                  1024)
          .c_str(),
      u.release, disk.c_str(), date, ReadFirstLine("/proc/loadavg").c_str());
}

std::string JsonLine(const Result& r) {
  auto num = [](double v) { return std::isfinite(v) ? StrFormat("%.4f", v) : std::string("null"); };
  std::string s = "{";
  s += StrFormat("\"model\":\"%s\",\"budget\":\"%s\",\"host_mem_bytes\":%llu,\"batch\":%d,",
                 JsonEscape(r.model).c_str(), JsonEscape(r.budget_label).c_str(),
                 (unsigned long long)r.budget_bytes, r.batch);
  if (!r.error.empty()) return s + "\"error\":\"" + JsonEscape(r.error) + "\"}";
  const double meas_over_bound = r.bound_ms_step > 0 ? r.decode_ms_step / r.bound_ms_step : 0;
  s += StrFormat(
      "\"resident_layers\":%d,\"num_layers\":%d,\"staging_slots\":%d,"
      "\"prefetch_depth\":%d,\"reads_on_demand\":%s,",
      r.resident, r.layers, r.slots, r.depth, r.on_demand ? "true" : "false");
  s += "\"prefill_ms_per_token\":" + num(r.prefill_ms_tok) +
       ",\"prefill_bound_ms_per_token\":" + num(r.prefill_bound_ms_tok) +
       ",\"decode_ms_per_step\":" + num(r.decode_ms_step) +
       ",\"decode_ms_per_token\":" + num(r.decode_ms_step / r.batch) +
       ",\"tokens_per_s\":" + num(r.decode_ms_step > 0 ? 1e3 * r.batch / r.decode_ms_step : 0) +
       ",\"read_gbps\":" + num(r.read_gbps) + ",\"disk_gbps\":" + num(r.disk_gbps) +
       ",\"bound_ms_per_step\":" + num(r.bound_ms_step) +
       ",\"bound_ms_per_token\":" + num(r.bound_ms_step / r.batch) +
       ",\"predicted_ms_per_step\":" + num(r.predicted_ms_step) +
       ",\"compute_ms_per_step\":" + num(r.compute_ms_step) +
       ",\"measured_over_bound\":" + num(meas_over_bound) +
       ",\"disk_busy_ms_per_step\":" + num(r.busy_ms_step) + ",\"disk_busy_fraction\":" +
       num(r.decode_ms_step > 0 ? r.busy_ms_step / r.decode_ms_step : 0) +
       ",\"busy_read_gbps\":" + num(r.busy_gbps) +
       ",\"mean_blocks_in_flight\":" + num(r.mean_in_flight) + ",\"measured_over_busy_bound\":" +
       num(r.decode_ms_step / std::max({r.busy_ms_step, r.compute_ms_step, 1e-9})) +
       ",\"paired_disk_gbps\":" + num(r.paired_disk_gbps) +
       ",\"measured_over_paired_bound\":" + num(r.paired_ratio) +
       ",\"wait_ms_per_step\":" + num(r.wait_ms_step) +
       ",\"resident_store_ms_per_step\":" + num(r.resident_store_ms_step) +
       ",\"resident_direct_ms_per_step\":" + num(r.resident_direct_ms_step) +
       ",\"baseline_decode_ms_per_step\":" + num(r.baseline_ms_step) +
       ",\"speedup_over_baseline\":" +
       num(r.baseline_ms_step > 0 ? r.baseline_ms_step / r.decode_ms_step : 0);
  s += StrFormat(
      ",\"open_s\":%.4f,\"huge_pages\":%s,\"open_huge_bytes\":%llu"
      ",\"peak_rss_bytes\":%llu,\"rss_limit_bytes\":%llu,\"kv_bytes\":%llu,"
      "\"activation_bytes\":%llu}",
      r.open_s, r.huge_pages ? "true" : "false", (unsigned long long)r.open_huge_bytes,
      (unsigned long long)r.peak_rss, (unsigned long long)r.rss_limit,
      (unsigned long long)r.kv_bytes, (unsigned long long)r.act_bytes);
  return s;
}

void PrintTable(FILE* out, const std::vector<Result>& results) {
  std::fprintf(
      out, "\n%-22s %9s %9s %5s %5s %9s %10s %9s %8s %6s %10s %6s %6s %6s %7s %10s %7s %9s\n",
      "model", "budget", "resident", "depth", "batch", "prefill", "decode", "decode", "tok/s",
      "GB/s", "bound", "meas/", "disk", "meas/", "meas/", "baseline", "speed-", "peak RSS");
  std::fprintf(out,
               "%-22s %9s %9s %5s %5s %9s %10s %9s %8s %6s %10s %6s %6s %6s %7s %10s %7s %9s\n", "",
               "", "layers", "", "", "ms/tok", "ms/step", "ms/tok", "", "read", "ms/step", "bound",
               "busy", "busy", "paired", "ms/step", "up", "");
  for (const Result& r : results) {
    if (!r.error.empty()) {
      std::fprintf(out, "%-22s %9s  error: %s\n", r.model.c_str(), r.budget_label.c_str(),
                   r.error.c_str());
      continue;
    }
    std::fprintf(out,
                 "%-22s %9s %4d/%-4d %5d %5d %9.2f %10.1f %9.1f %8.2f %6.2f %10.1f %6.2f %5.0f%% "
                 "%6.2f %7s %10s %7s %9s\n",
                 r.model.c_str(), r.budget_label.c_str(), r.resident, r.layers, r.depth, r.batch,
                 r.prefill_ms_tok, r.decode_ms_step, r.decode_ms_step / r.batch,
                 1e3 * r.batch / r.decode_ms_step, r.read_gbps, r.bound_ms_step,
                 r.decode_ms_step / r.bound_ms_step,
                 r.decode_ms_step > 0 ? 100.0 * r.busy_ms_step / r.decode_ms_step : 0.0,
                 r.decode_ms_step / std::max({r.busy_ms_step, r.compute_ms_step, 1e-9}),
                 r.paired_ratio > 0 ? StrFormat("%.2f", r.paired_ratio).c_str() : "-",
                 r.baseline_ms_step > 0 ? StrFormat("%.1f", r.baseline_ms_step).c_str() : "-",
                 r.baseline_ms_step > 0
                     ? StrFormat("%.2fx", r.baseline_ms_step / r.decode_ms_step).c_str()
                     : "-",
                 FormatBytes(r.peak_rss).c_str());
  }
}

}  // namespace glm
