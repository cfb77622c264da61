// SAT rank files: a protocol-2 pickle written by hand plus a streamed stored zip.
#include "quant/sat_writer.h"

#include <algorithm>
#include <memory>

#include "quant/zip.h"

namespace glm {
namespace {

constexpr int64_t kChunkElems = 16 << 20;

class Pickler {
 public:
  void Op(char c) { out_.push_back(c); }
  void Str(const std::string& s) {  // BINUNICODE
    Op('X');
    U32(uint32_t(s.size()));
    out_ += s;
  }
  void Global(const char* module, const char* name) {  // GLOBAL
    Op('c');
    out_ += std::string(module) + "\n" + name + "\n";
  }
  void Int(int64_t v) {
    if (v >= 0 && v < 256) {  // BININT1
      Op('K');
      out_.push_back(char(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {  // BININT
      Op('J');
      U32(uint32_t(int32_t(v)));
    } else {  // LONG1: 8 little-endian two's-complement bytes
      Op(char(0x8a));
      out_.push_back(8);
      for (int i = 0; i < 8; ++i) out_.push_back(char(uint64_t(v) >> (8 * i)));
    }
  }
  void Tuple(const std::vector<int64_t>& v) {
    Op('(');
    for (int64_t x : v) Int(x);
    Op('t');
  }
  void EmptyOrderedDict() {
    Global("collections", "OrderedDict");
    Op(')');
    Op('R');
  }
  std::string& out() { return out_; }

 private:
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(char(v >> (8 * i)));
  }
  std::string out_;
};

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

std::string SatStateDictPickle(const std::vector<SatWriteTensor>& tensors) {
  Pickler p;
  p.Op(char(0x80));  // PROTO 2
  p.Op(2);
  p.Op('}');  // {}
  p.Str("module");
  p.EmptyOrderedDict();
  p.Op('(');  // MARK for SETITEMS
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SatWriteTensor& t = tensors[i];
    std::vector<int64_t> strides(t.shape.size(), 1);
    for (size_t d = t.shape.size(); d-- > 1;) strides[d - 1] = strides[d] * t.shape[d];
    p.Str(t.key);
    p.Global("torch._utils", "_rebuild_tensor_v2");
    p.Op('(');
    p.Op('(');  // persistent id ('storage', torch.HalfStorage, key, 'cpu', numel)
    p.Str("storage");
    p.Global("torch", "HalfStorage");
    p.Str(std::to_string(i));
    p.Str("cpu");
    p.Int(Numel(t.shape));
    p.Op('t');
    p.Op('Q');  // BINPERSID
    p.Int(0);   // storage offset
    p.Tuple(t.shape);
    p.Tuple(strides);
    p.Op(char(0x89));      // requires_grad = False
    p.EmptyOrderedDict();  // backward hooks
    p.Op('t');
    p.Op('R');
  }
  p.Op('u');  // SETITEMS into the OrderedDict
  p.Op('s');  // {"module": ...}
  p.Op('.');
  return p.out();
}

Status WriteSatRankFile(const std::string& path, const std::vector<SatWriteTensor>& tensors,
                        const SatFill& fill) {
  ASSIGN_OR_RETURN(std::unique_ptr<ZipStreamWriter> z, ZipStreamWriter::Create(path, false));
  const std::string pkl = SatStateDictPickle(tensors);
  RETURN_IF_ERROR(z->BeginEntry("archive/data.pkl", pkl.size()));
  RETURN_IF_ERROR(z->Write(pkl.data(), pkl.size()));
  RETURN_IF_ERROR(z->EndEntry());
  std::vector<Half> buf;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t numel = Numel(tensors[i].shape);
    RETURN_IF_ERROR(z->BeginEntry("archive/data/" + std::to_string(i), uint64_t(numel) * 2));
    const int64_t row = tensors[i].shape.empty() ? 1 : tensors[i].shape.back();
    const int64_t chunk = std::max<int64_t>(1, kChunkElems / std::max<int64_t>(row, 1)) * row;
    for (int64_t e0 = 0; e0 < numel; e0 += chunk) {
      const int64_t n = std::min(chunk, numel - e0);
      buf.resize(size_t(n));
      RETURN_IF_ERROR(fill(i, e0, n, buf.data()));
      RETURN_IF_ERROR(z->Write(buf.data(), size_t(n) * 2));
    }
    RETURN_IF_ERROR(z->EndEntry());
  }
  const std::string version = "3\n";
  RETURN_IF_ERROR(z->BeginEntry("archive/version", version.size()));
  RETURN_IF_ERROR(z->Write(version.data(), version.size()));
  RETURN_IF_ERROR(z->EndEntry());
  return z->Finish().WithContext("writing SAT rank file");
}

}  // namespace glm
