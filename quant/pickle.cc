// Safe pickle interpreter: opcode semantics follow CPython's Lib/pickle.py (_Unpickler), except
// that globals come from an allow-list and "calling" one only builds an inert value.
#include "quant/pickle.h"

#include <cstring>
#include <unordered_map>

namespace glm {
namespace {

// What an allowed global is, so that REDUCE/NEWOBJ know which inert value to build.
enum class Role {
  kOrderedDict,
  kRebuildTensorV2,   // (storage, offset, size, stride, requires_grad, hooks[, metadata])
  kRebuildTensor,     // (storage, offset, size, stride)
  kRebuildParameter,  // (tensor, requires_grad, hooks[, state])
  kStorageType,       // torch.HalfStorage etc.: only ever the 2nd element of a persistent id
  kDType,             // torch.float16 etc.
  kSize,              // torch.Size(tuple)
  kSet,               // builtins.set / frozenset
  kInert,             // objects in top-level keys we ignore (args, rng states)
};

const std::unordered_map<std::string, Role>& AllowList() {
  static const auto* table = [] {
    auto* t = new std::unordered_map<std::string, Role>{
        {"collections.OrderedDict", Role::kOrderedDict},
        {"torch._utils._rebuild_tensor_v2", Role::kRebuildTensorV2},
        {"torch._utils._rebuild_tensor", Role::kRebuildTensor},
        {"torch._utils._rebuild_parameter", Role::kRebuildParameter},
        {"torch._utils._rebuild_parameter_with_state", Role::kRebuildParameter},
        {"torch.Size", Role::kSize},
        {"argparse.Namespace", Role::kInert},
        {"_codecs.encode", Role::kInert},  // protocol-2 pickles encode bytes through it
    };
    // torch.save writes the legacy typed-storage name even for torch>=2 (TypedStorage
    // ._pickle_storage_type) and for CUDA storages (the location says cuda).
    for (const char* s : {"Half", "Float", "BFloat16", "Double", "Long", "Int", "Short", "Char",
                          "Byte", "Bool", "ComplexFloat", "ComplexDouble", "Untyped"}) {
      t->emplace(std::string("torch.") + s + "Storage", Role::kStorageType);
    }
    for (const char* d :
         {"float16", "half", "bfloat16", "float32", "float", "float64", "double", "int64", "long",
          "int32", "int", "int16", "short", "int8", "uint8", "bool", "complex64", "complex128"}) {
      t->emplace(std::string("torch.") + d, Role::kDType);
    }
    // numpy arrays (np.random.get_state()) and scalars; numpy 2 renamed core -> _core.
    for (const char* np : {"numpy.core.multiarray.", "numpy._core.multiarray."}) {
      t->emplace(std::string(np) + "_reconstruct", Role::kInert);
      t->emplace(std::string(np) + "scalar", Role::kInert);
    }
    t->emplace("numpy.ndarray", Role::kInert);
    t->emplace("numpy.dtype", Role::kInert);
    // Protocol <= 2 spells the builtins module "__builtin__" (Python 2 compatibility names).
    for (const char* b : {"builtins.", "__builtin__."}) {
      t->emplace(std::string(b) + "set", Role::kSet);
      t->emplace(std::string(b) + "frozenset", Role::kSet);
      t->emplace(std::string(b) + "slice", Role::kInert);
      t->emplace(std::string(b) + "bytearray", Role::kInert);
    }
    return t;
  }();
  return *table;
}

std::string Printable(std::string_view s, size_t max = 80) {
  std::string out;
  for (char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > max) out += "...";
  return out;
}

}  // namespace

const char* PyKindName(PyKind k) {
  switch (k) {
    case PyKind::kNone:
      return "None";
    case PyKind::kBool:
      return "bool";
    case PyKind::kInt:
      return "int";
    case PyKind::kFloat:
      return "float";
    case PyKind::kStr:
      return "str";
    case PyKind::kBytes:
      return "bytes";
    case PyKind::kTuple:
      return "tuple";
    case PyKind::kList:
      return "list";
    case PyKind::kDict:
      return "dict";
    case PyKind::kSet:
      return "set";
    case PyKind::kGlobal:
      return "global";
    case PyKind::kStorage:
      return "storage";
    case PyKind::kTensor:
      return "tensor";
    case PyKind::kObject:
      return "object";
  }
  return "?";
}

std::string PyShortRepr(const PyObject* v) {
  if (v == nullptr) return "<null>";
  switch (v->kind) {
    case PyKind::kNone:
      return "None";
    case PyKind::kBool:
      return v->int_value ? "True" : "False";
    case PyKind::kInt:
      return std::to_string(v->int_value);
    case PyKind::kFloat:
      return StrFormat("%g", v->float_value);
    case PyKind::kStr:
      return "'" + Printable(v->text) + "'";
    case PyKind::kGlobal:
    case PyKind::kObject:
      return StrFormat("<%s %s>", PyKindName(v->kind), v->text.c_str());
    case PyKind::kStorage:
      return "<storage " + v->storage->type_name + ">";
    default:
      return StrFormat("<%s of %zu>", PyKindName(v->kind), v->items.size());
  }
}

const PyObject* PyDictGet(const PyObject* dict, std::string_view key) {
  if (dict == nullptr || dict->kind != PyKind::kDict) return nullptr;
  const PyObject* found = nullptr;
  for (size_t i = 0; i + 1 < dict->items.size(); i += 2) {
    const PyObject* k = dict->items[i];
    if (k->kind == PyKind::kStr && k->text == key) found = dict->items[i + 1];
  }
  return found;
}

class PickleMachine {
 public:
  PickleMachine(std::string_view data, const std::string& source, const PickleLimits& limits)
      : data_(data), source_(source), limits_(limits), out_(new UnpickledValue) {}

  StatusOr<std::unique_ptr<UnpickledValue>> Run();

 private:
  Status Fail(const std::string& msg) const {
    return Errorf("pickle error in '%s' at byte %zu: %s", source_.c_str(), op_pos_, msg.c_str());
  }
  StatusOr<PyObject*> New(PyKind kind) {
    if (out_->arena_.size() >= limits_.max_objects) {
      return Fail(StrFormat("more than %zu objects", limits_.max_objects));
    }
    out_->arena_.emplace_back();
    out_->arena_.back().kind = kind;
    return &out_->arena_.back();
  }
  Status Push(PyObject* v) {
    if (stack_.size() >= limits_.max_stack) {
      return Fail(StrFormat("stack deeper than %zu", limits_.max_stack));
    }
    stack_.push_back(v);
    return Status::Ok();
  }
  size_t FrameBase() const { return marks_.empty() ? 0 : marks_.back(); }
  StatusOr<PyObject*> Pop() {
    if (stack_.size() <= FrameBase()) return Fail("stack underflow");
    PyObject* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  StatusOr<PyObject*> Top() {
    if (stack_.size() <= FrameBase()) return Fail("stack underflow");
    return stack_.back();
  }
  // Pops everything above the last MARK, and the mark.
  StatusOr<std::vector<PyObject*>> PopMark() {
    if (marks_.empty()) return Fail("no MARK on the stack");
    const size_t base = marks_.back();
    marks_.pop_back();
    std::vector<PyObject*> items(stack_.begin() + base, stack_.end());
    stack_.resize(base);
    return items;
  }
  Status Read(size_t n, std::string_view* out) {
    if (n > data_.size() - pos_) {
      return Fail(StrFormat("needs %zu bytes, only %zu left", n, data_.size() - pos_));
    }
    *out = data_.substr(pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  // Little-endian unsigned integer of n bytes.
  StatusOr<uint64_t> ReadUint(size_t n) {
    std::string_view b;
    RETURN_IF_ERROR(Read(n, &b));
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t(uint8_t(b[i])) << (8 * i);
    return v;
  }
  StatusOr<std::string_view> ReadLine() {
    const size_t nl = data_.find('\n', pos_);
    if (nl == std::string_view::npos || nl - pos_ > 256) return Fail("bad GLOBAL line");
    std::string_view line = data_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return line;
  }
  Status PushNew(PyKind kind, std::string_view text = {}, int64_t i = 0) {
    ASSIGN_OR_RETURN(PyObject * v, New(kind));
    v->text.assign(text);
    v->int_value = i;
    return Push(v);
  }
  Status PushContainer(PyKind kind, std::vector<PyObject*> items) {
    ASSIGN_OR_RETURN(PyObject * v, New(kind));
    v->items = std::move(items);
    return Push(v);
  }
  Status Global(std::string_view module, std::string_view name);
  Status Reduce(PyObject* callable, PyObject* args);
  Status NewObj(PyObject* cls, PyObject* args);
  Status PersistentId(PyObject* pid);
  Status RebuildTensor(const char* fn, const std::vector<PyObject*>& args);
  Status Step(uint8_t op);

  std::string_view data_;
  const std::string& source_;
  const PickleLimits limits_;
  std::unique_ptr<UnpickledValue> out_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  bool stopped_ = false;
  std::vector<PyObject*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PyObject*> memo_;
};

Status PickleMachine::Global(std::string_view module, std::string_view name) {
  const std::string full = std::string(module) + "." + std::string(name);
  if (AllowList().count(full) == 0) {
    return Errorf(
        "refusing global '%s' in '%s' (pickle byte %zu): not a tensor state-dict type; "
        "this checkpoint may be malicious",
        Printable(full, 200).c_str(), source_.c_str(), op_pos_);
  }
  return PushNew(PyKind::kGlobal, full);
}

Status PickleMachine::RebuildTensor(const char* fn, const std::vector<PyObject*>& a) {
  auto bad = [&](const char* what) { return Fail(StrFormat("bad arguments to %s: %s", fn, what)); };
  if (a[0]->kind != PyKind::kStorage) return bad("first argument is not a storage");
  if (a[1]->kind != PyKind::kInt || a[1]->int_value < 0) return bad("bad storage offset");
  if (a[2]->kind != PyKind::kTuple || a[3]->kind != PyKind::kTuple ||
      a[2]->items.size() != a[3]->items.size() || a[2]->items.size() > limits_.max_ndim) {
    return bad("size and stride must be tuples of the same length");
  }
  ASSIGN_OR_RETURN(PyObject * t, New(PyKind::kTensor));
  t->tensor = std::make_unique<TorchTensorDesc>();
  t->tensor->storage = *a[0]->storage;
  t->tensor->storage_offset = a[1]->int_value;
  for (size_t d = 0; d < a[2]->items.size(); ++d) {
    const PyObject* n = a[2]->items[d];
    const PyObject* s = a[3]->items[d];
    if (n->kind != PyKind::kInt || s->kind != PyKind::kInt || n->int_value < 0 ||
        s->int_value < 0) {
      return bad("size and stride must be non-negative ints");
    }
    t->tensor->shape.push_back(n->int_value);
    t->tensor->strides.push_back(s->int_value);
  }
  return Push(t);
}

Status PickleMachine::Reduce(PyObject* callable, PyObject* args) {
  if (callable->kind != PyKind::kGlobal) {
    return Fail(StrFormat("REDUCE on %s; only allowed globals can be applied",
                          PyShortRepr(callable).c_str()));
  }
  if (args->kind != PyKind::kTuple) return Fail("REDUCE arguments are not a tuple");
  const std::vector<PyObject*>& a = args->items;
  const char* fn = callable->text.c_str();
  switch (AllowList().at(callable->text)) {
    case Role::kOrderedDict: {
      ASSIGN_OR_RETURN(PyObject * d, New(PyKind::kDict));
      if (a.size() == 1 && (a[0]->kind == PyKind::kList || a[0]->kind == PyKind::kTuple)) {
        for (const PyObject* kv : a[0]->items) {
          if (kv->kind != PyKind::kTuple || kv->items.size() != 2) {
            return Fail("OrderedDict argument is not a sequence of pairs");
          }
          d->items.push_back(kv->items[0]);
          d->items.push_back(kv->items[1]);
        }
      } else if (!a.empty()) {
        return Fail("unexpected OrderedDict arguments");
      }
      return Push(d);
    }
    case Role::kRebuildTensorV2:
      if (a.size() != 6 && a.size() != 7) return Fail(StrFormat("%s takes 6 or 7 arguments", fn));
      return RebuildTensor(fn, a);
    case Role::kRebuildTensor:
      if (a.size() != 4) return Fail(StrFormat("%s takes 4 arguments", fn));
      return RebuildTensor(fn, a);
    case Role::kRebuildParameter:
      // nn.Parameter(tensor): the parameter is the tensor for our purposes.
      if ((a.size() != 3 && a.size() != 4) || a[0]->kind != PyKind::kTensor) {
        return Fail(StrFormat("bad arguments to %s", fn));
      }
      return Push(a[0]);
    case Role::kSize:
      if (a.size() != 1 || a[0]->kind != PyKind::kTuple) return Fail("bad torch.Size arguments");
      return Push(a[0]);
    case Role::kSet:
      if (a.empty()) return PushContainer(PyKind::kSet, {});
      if (a.size() == 1 && (a[0]->kind == PyKind::kList || a[0]->kind == PyKind::kTuple ||
                            a[0]->kind == PyKind::kSet)) {
        return PushContainer(PyKind::kSet, a[0]->items);
      }
      return Fail("bad set arguments");
    case Role::kStorageType:
    case Role::kDType:
    case Role::kInert:
      return PushNew(PyKind::kObject, callable->text);
  }
  return Fail("unreachable");
}

Status PickleMachine::NewObj(PyObject* cls, PyObject* args) {
  if (cls->kind != PyKind::kGlobal || args->kind != PyKind::kTuple) {
    return Fail(StrFormat("NEWOBJ on %s", PyShortRepr(cls).c_str()));
  }
  switch (AllowList().at(cls->text)) {
    case Role::kOrderedDict:
      return PushContainer(PyKind::kDict, {});
    case Role::kSet:
      return PushContainer(PyKind::kSet, {});
    case Role::kInert:
    case Role::kStorageType:
    case Role::kDType:
      return PushNew(PyKind::kObject, cls->text);
    default:
      return Fail(StrFormat("NEWOBJ on function %s", cls->text.c_str()));
  }
}

Status PickleMachine::PersistentId(PyObject* pid) {
  // torch.serialization._save: ('storage', storage_type, key, location, numel).
  const std::vector<PyObject*>& a = pid->items;
  if (pid->kind != PyKind::kTuple || a.size() != 5 || a[0]->kind != PyKind::kStr ||
      a[0]->text != "storage" || a[1]->kind != PyKind::kGlobal ||
      AllowList().at(a[1]->text) != Role::kStorageType || a[2]->kind != PyKind::kStr ||
      a[3]->kind != PyKind::kStr || a[4]->kind != PyKind::kInt) {
    return Fail(
        StrFormat("unsupported persistent id %s (expected ('storage', "
                  "torch.<T>Storage, key, location, numel))",
                  PyShortRepr(pid).c_str()));
  }
  ASSIGN_OR_RETURN(PyObject * s, New(PyKind::kStorage));
  s->storage = std::make_unique<TorchStorageRef>();
  s->storage->type_name = a[1]->text.substr(std::strlen("torch."));
  s->storage->key = a[2]->text;
  s->storage->location = a[3]->text;
  s->storage->numel = a[4]->int_value;
  return Push(s);
}

Status PickleMachine::Step(uint8_t op) {
  switch (op) {
    case 0x80: {  // PROTO
      ASSIGN_OR_RETURN(uint64_t v, ReadUint(1));
      if (v > 5) return Fail(StrFormat("unsupported pickle protocol %llu", (unsigned long long)v));
      return Status::Ok();
    }
    case 0x95: {  // FRAME: a length prefix only; frames need no special handling when reading
      ASSIGN_OR_RETURN(uint64_t n, ReadUint(8));
      if (n > data_.size() - pos_) return Fail("FRAME longer than the remaining data");
      return Status::Ok();
    }
    case '.': {  // STOP
      ASSIGN_OR_RETURN(PyObject * v, Pop());
      out_->root_ = v;
      stopped_ = true;
      return Status::Ok();
    }
    case '(':  // MARK
      if (marks_.size() >= limits_.max_marks) return Fail("too many nested MARKs");
      marks_.push_back(stack_.size());
      return Status::Ok();
    case '0':  // POP: pops the top item, or the mark if the frame is empty (as CPython)
      if (stack_.size() > FrameBase()) {
        stack_.pop_back();
        return Status::Ok();
      }
      return PopMark().status();
    case '1':
      return PopMark().status();  // POP_MARK
    case '2': {                   // DUP
      ASSIGN_OR_RETURN(PyObject * v, Top());
      return Push(v);
    }
    case 'N':
      return PushNew(PyKind::kNone);
    case 0x88:
      return PushNew(PyKind::kBool, {}, 1);  // NEWTRUE
    case 0x89:
      return PushNew(PyKind::kBool, {}, 0);  // NEWFALSE
    case 'J': {                              // BININT
      ASSIGN_OR_RETURN(uint64_t v, ReadUint(4));
      return PushNew(PyKind::kInt, {}, int32_t(uint32_t(v)));
    }
    case 'K':    // BININT1
    case 'M': {  // BININT2
      ASSIGN_OR_RETURN(uint64_t v, ReadUint(op == 'K' ? 1 : 2));
      return PushNew(PyKind::kInt, {}, int64_t(v));
    }
    case 0x8a:    // LONG1
    case 0x8b: {  // LONG4: little-endian two's complement
      ASSIGN_OR_RETURN(uint64_t n, ReadUint(op == 0x8a ? 1 : 4));
      if (n > 8)
        return Fail(StrFormat("integer of %llu bytes is too large", (unsigned long long)n));
      ASSIGN_OR_RETURN(uint64_t v, ReadUint(n));
      if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t(0) << (8 * n);
      return PushNew(PyKind::kInt, {}, int64_t(v));
    }
    case 'G': {  // BINFLOAT: big-endian double
      std::string_view b;
      RETURN_IF_ERROR(Read(8, &b));
      uint64_t bits = 0;
      for (char c : b) bits = (bits << 8) | uint8_t(c);
      ASSIGN_OR_RETURN(PyObject * v, New(PyKind::kFloat));
      std::memcpy(&v->float_value, &bits, 8);
      return Push(v);
    }
    case 0x8c:
    case 'X':
    case 0x8d:  // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
    case 'U':
    case 'T':  // SHORT_BINSTRING, BINSTRING
    case 'C':
    case 'B':
    case 0x8e:
    case 0x96: {  // SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8
      const size_t width = (op == 0x8c || op == 'U' || op == 'C')  ? 1
                           : (op == 'X' || op == 'T' || op == 'B') ? 4
                                                                   : 8;
      ASSIGN_OR_RETURN(uint64_t n, ReadUint(width));
      if (op == 'T' && n > 0x7fffffffu) return Fail("negative BINSTRING length");
      std::string_view b;
      RETURN_IF_ERROR(Read(n, &b));  // checks n against the remaining bytes before any copy
      const bool str = op == 0x8c || op == 'X' || op == 0x8d || op == 'U' || op == 'T';
      return PushNew(str ? PyKind::kStr : PyKind::kBytes, b);
    }
    case ')':
      return PushContainer(PyKind::kTuple, {});  // EMPTY_TUPLE
    case 0x85:
    case 0x86:
    case 0x87: {  // TUPLE1..3
      std::vector<PyObject*> items(op - 0x84);
      for (size_t i = items.size(); i-- > 0;) {
        ASSIGN_OR_RETURN(items[i], Pop());
      }
      return PushContainer(PyKind::kTuple, std::move(items));
    }
    case 't':
    case 'l':
    case 0x91: {  // TUPLE, LIST, FROZENSET
      ASSIGN_OR_RETURN(std::vector<PyObject*> items, PopMark());
      const PyKind k = op == 't' ? PyKind::kTuple : op == 'l' ? PyKind::kList : PyKind::kSet;
      return PushContainer(k, std::move(items));
    }
    case ']':
      return PushContainer(PyKind::kList, {});  // EMPTY_LIST
    case '}':
      return PushContainer(PyKind::kDict, {});  // EMPTY_DICT
    case 0x8f:
      return PushContainer(PyKind::kSet, {});  // EMPTY_SET
    case 'd': {                                // DICT
      ASSIGN_OR_RETURN(std::vector<PyObject*> items, PopMark());
      if (items.size() % 2) return Fail("DICT with an odd number of items");
      return PushContainer(PyKind::kDict, std::move(items));
    }
    case 'a':
    case 's':
    case 'e':
    case 'u':
    case 0x90: {  // APPEND SETITEM APPENDS SETITEMS ADDITEMS
      std::vector<PyObject*> items;
      if (op == 'a' || op == 's') {
        items.resize(op == 'a' ? 1 : 2);
        for (size_t i = items.size(); i-- > 0;) {
          ASSIGN_OR_RETURN(items[i], Pop());
        }
      } else {
        ASSIGN_OR_RETURN(items, PopMark());
      }
      ASSIGN_OR_RETURN(PyObject * target, Top());
      const bool dict = op == 's' || op == 'u';
      const PyKind want = dict ? PyKind::kDict : op == 0x90 ? PyKind::kSet : PyKind::kList;
      if (target->kind != want) {
        return Fail(StrFormat("cannot add items to %s", PyShortRepr(target).c_str()));
      }
      if (dict && items.size() % 2) return Fail("SETITEMS with an odd number of items");
      target->items.insert(target->items.end(), items.begin(), items.end());
      return Status::Ok();
    }
    case 'q':
    case 'r':
    case 0x94: {  // BINPUT, LONG_BINPUT, MEMOIZE
      uint64_t idx = memo_.size();
      if (op != 0x94) {
        ASSIGN_OR_RETURN(idx, ReadUint(op == 'q' ? 1 : 4));
      }
      ASSIGN_OR_RETURN(PyObject * v, Top());
      if (memo_.size() >= limits_.max_memo && memo_.count(idx) == 0) return Fail("memo too large");
      memo_[idx] = v;
      return Status::Ok();
    }
    case 'h':
    case 'j': {  // BINGET, LONG_BINGET
      ASSIGN_OR_RETURN(uint64_t idx, ReadUint(op == 'h' ? 1 : 4));
      auto it = memo_.find(idx);
      if (it == memo_.end())
        return Fail(StrFormat("memo key %llu missing", (unsigned long long)idx));
      return Push(it->second);
    }
    case 'c': {  // GLOBAL "module\nname\n"
      ASSIGN_OR_RETURN(std::string_view module, ReadLine());
      ASSIGN_OR_RETURN(std::string_view name, ReadLine());
      return Global(module, name);
    }
    case 0x93: {  // STACK_GLOBAL
      ASSIGN_OR_RETURN(PyObject * name, Pop());
      ASSIGN_OR_RETURN(PyObject * module, Pop());
      if (module->kind != PyKind::kStr || name->kind != PyKind::kStr) {
        return Fail("STACK_GLOBAL needs two strings");
      }
      return Global(module->text, name->text);
    }
    case 'R': {  // REDUCE
      ASSIGN_OR_RETURN(PyObject * args, Pop());
      ASSIGN_OR_RETURN(PyObject * callable, Pop());
      return Reduce(callable, args);
    }
    case 0x81:
    case 0x92: {  // NEWOBJ, NEWOBJ_EX (kwargs ignored: nothing is constructed)
      if (op == 0x92) RETURN_IF_ERROR(Pop().status());
      ASSIGN_OR_RETURN(PyObject * args, Pop());
      ASSIGN_OR_RETURN(PyObject * cls, Pop());
      return NewObj(cls, args);
    }
    case 'b': {  // BUILD: state is dropped (OrderedDict._metadata, Namespace and numpy state)
      RETURN_IF_ERROR(Pop().status());
      ASSIGN_OR_RETURN(PyObject * target, Top());
      if (target->kind != PyKind::kObject && target->kind != PyKind::kDict &&
          target->kind != PyKind::kTensor) {
        return Fail(StrFormat("BUILD on %s", PyShortRepr(target).c_str()));
      }
      return Status::Ok();
    }
    case 'Q': {  // BINPERSID
      ASSIGN_OR_RETURN(PyObject * pid, Pop());
      return PersistentId(pid);
    }
    default:
      return Fail(
          StrFormat("unsupported pickle opcode 0x%02x (torch.save state dicts use "
                    "protocols 2-5)",
                    op));
  }
}

StatusOr<std::unique_ptr<UnpickledValue>> PickleMachine::Run() {
  while (!stopped_) {
    if (pos_ >= data_.size()) {
      op_pos_ = pos_;
      return Fail("data ends without a STOP opcode (truncated pickle)");
    }
    op_pos_ = pos_;
    RETURN_IF_ERROR(Step(uint8_t(data_[pos_++])));
  }
  return std::move(out_);
}

StatusOr<std::unique_ptr<UnpickledValue>> Unpickle(std::string_view data, const std::string& source,
                                                   const PickleLimits& limits) {
  PickleMachine m(data, source, limits);
  return m.Run();
}

}  // namespace glm
