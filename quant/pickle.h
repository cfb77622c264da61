// A pickle interpreter for torch.save state dicts that never executes anything (spec §2.1).
// Python's pickle calls whatever callable the stream names; a checkpoint downloaded from the
// internet must not be able to run code. Here GLOBAL/STACK_GLOBAL are checked against an
// allow-list of tensor state-dict types, and REDUCE/NEWOBJ/BUILD on an allowed global only build
// an inert value: a tensor descriptor for torch's rebuild functions, a dict for OrderedDict, an
// opaque object otherwise. Every resource (stack, memo, objects, string lengths) is bounded.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/check.h"

namespace glm {

enum class PyKind : uint8_t {
  kNone,
  kBool,
  kInt,
  kFloat,
  kStr,
  kBytes,
  kTuple,
  kList,
  kDict,     // dict and collections.OrderedDict; items alternate key, value, in insertion order
  kSet,      // set and frozenset
  kGlobal,   // an allowed global, not called: text = "module.name"
  kStorage,  // a persistent id ('storage', <type>, key, location, numel)
  kTensor,   // torch._utils._rebuild_tensor_v2 / _rebuild_tensor / _rebuild_parameter result
  kObject,   // anything else an allowed global builds (argparse.Namespace, numpy arrays, ...)
};
const char* PyKindName(PyKind k);

// Persistent id of a torch storage: ('storage', torch.HalfStorage, '3', 'cpu', 4096).
struct TorchStorageRef {
  std::string type_name;  // "HalfStorage", "BFloat16Storage", ... (the global's name)
  std::string key;        // the archive entry is "<prefix>/data/<key>"
  std::string location;   // "cpu", "cuda:0" (irrelevant: bytes are in the archive)
  int64_t numel = 0;      // elements as recorded by torch (not trusted: the entry size is)
};

// What torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...) would build.
struct TorchTensorDesc {
  TorchStorageRef storage;
  int64_t storage_offset = 0;  // elements
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // elements
};

// One value. Objects live in an arena owned by UnpickledValue and refer to each other by raw
// pointer, so shared references (memo, DUP) and even cycles are fine and nothing recurses on
// destruction.
struct PyObject {
  PyKind kind = PyKind::kNone;
  int64_t int_value = 0;         // kBool (0/1), kInt, kStorage: unused
  double float_value = 0;        // kFloat
  std::string text;              // kStr (UTF-8), kBytes; kGlobal / kObject: "module.name"
  std::vector<PyObject*> items;  // kTuple, kList, kSet; kDict: key0, value0, key1, value1, ...
  std::unique_ptr<TorchStorageRef> storage;  // kStorage
  std::unique_ptr<TorchTensorDesc> tensor;   // kTensor
};

struct PickleLimits {
  size_t max_objects = size_t(1) << 22;
  size_t max_stack = size_t(1) << 20;
  size_t max_marks = size_t(1) << 16;
  size_t max_memo = size_t(1) << 22;
  size_t max_ndim = 32;
};

// The result of unpickling: the root value and the arena that owns every object.
class UnpickledValue {
 public:
  const PyObject* root() const { return root_; }
  size_t num_objects() const { return arena_.size(); }

 private:
  friend class PickleMachine;
  std::deque<PyObject> arena_;
  const PyObject* root_ = nullptr;
};

// Interprets pickle protocols 2-5 as written by torch.save. `source` names the file in errors
// ("refusing global 'os.system' in foo.pt: ..."). Never imports, calls or evaluates anything.
StatusOr<std::unique_ptr<UnpickledValue>> Unpickle(std::string_view data, const std::string& source,
                                                   const PickleLimits& limits = {});

// Value of the last `key` (a str) in a kDict, or nullptr; later duplicates win, as in Python.
const PyObject* PyDictGet(const PyObject* dict, std::string_view key);
// A short description for error messages: 'abc', 12, <tuple of 3>, <object argparse.Namespace>.
std::string PyShortRepr(const PyObject* v);

}  // namespace glm
