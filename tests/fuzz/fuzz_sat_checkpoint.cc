// libFuzzer target: feeds one SAT rank file through zip, pickle, tensor listing and ReadMerged.
// An input starting with "PK" is the rank file itself. Anything else is taken as a data.pkl and
// wrapped in a valid archive with a few storages, because the CRC check on data.pkl would
// otherwise stop nearly every mutation of the pickle before the interpreter sees it.
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "quant/pickle.h"
#include "quant/sat_checkpoint.h"
#include "quant/zip.h"

namespace {

struct Workspace {
  std::string dir;   // a checkpoint directory: latest = "1"
  std::string rank;  // <dir>/1/mp_rank_00_model_states.pt, rewritten for every input
  std::vector<glm::ZipWriteEntry> storages;

  Workspace() {
    const char* tmp = getenv("TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/fuzz_sat_XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) abort();
    dir = tmpl;
    std::filesystem::create_directories(dir + "/1");
    FILE* f = fopen((dir + "/latest").c_str(), "w");
    if (f == nullptr) abort();
    fputs("1\n", f);
    fclose(f);
    rank = dir + "/1/mp_rank_00_model_states.pt";
    // Storage keys "0".."31" as torch numbers them; 4 KiB covers every fixture tensor.
    for (int k = 0; k < 32; ++k) {
      std::string bytes(4096, '\0');
      for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char((i * 131 + k * 7) & 0xff);
      storages.push_back({"archive/data/" + std::to_string(k), std::move(bytes)});
    }
  }
  ~Workspace() { std::filesystem::remove_all(dir); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Workspace ws;
  const std::string input(reinterpret_cast<const char*>(data), size);
  if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
    FILE* f = fopen(ws.rank.c_str(), "wb");
    if (f == nullptr) abort();
    if (size > 0 && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
  } else {
    auto direct = glm::Unpickle(input, "fuzz input");  // the interpreter alone, in memory
    (void)direct;
    std::vector<glm::ZipWriteEntry> entries = {{"archive/data.pkl", input},
                                               {"archive/byteorder", "little"}};
    entries.insert(entries.end(), ws.storages.begin(), ws.storages.end());
    if (!glm::WriteStoredZip(ws.rank, entries, /*zip64=*/size % 2 == 1).ok()) abort();
  }
  auto ck = glm::SatCheckpoint::Open(ws.dir);
  if (!ck.ok()) return 0;
  for (const glm::SatTensorInfo& info : (*ck)->tensors()) {
    int64_t n = 1;
    for (int64_t d : info.shape) n *= d;
    if (n > (1 << 20)) continue;  // stride-0 views may be huge yet valid; skip the allocation
    std::vector<uint32_t> out(static_cast<size_t>(n));
    (void)(*ck)->ReadMerged(info.key, glm::DType::kF16, out.data(), size_t(n) * 2);
    (void)(*ck)->ReadMerged(info.key, glm::DType::kF32, out.data(), size_t(n) * 4);
  }
  return 0;
}
