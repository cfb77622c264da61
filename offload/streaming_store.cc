// StreamingStore (slot table, schedule, I/O thread) and ComputeOnlyStore. The contract and the
// slot state machine are described in streaming_store.h.
#include "offload/streaming_store.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>

#include "offload/model_file.h"

namespace glm {
namespace {

const char* StateName(int s) {
  static const char* kNames[] = {"free", "reading", "ready", "in use"};
  return kNames[s];
}

double Secs(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

StatusOr<HostFootprint> ReadHostFootprint(const GgufFile& f) {
  HostFootprint m;
  ASSIGN_OR_RETURN(m.cfg, ReadModelConfig(f));
  ASSIGN_OR_RETURN(m.weight_type, f.GetString("glmstream.weight_type"));
  // Each layer must be one extent the views can point into as read: TP=1, not compressed.
  if (f.Find("glmstream.compression")) {
    return Errorf(
        "%s: compressed model files are not supported by the streaming store yet "
        "(extents must be usable as read)",
        f.path().c_str());
  }
  if (f.Find("glmstream.tensor_parallel")) {
    ASSIGN_OR_RETURN(uint64_t tp, f.GetUInt("glmstream.tensor_parallel"));
    if (tp != 1) {
      return Errorf(
          "%s: a TP=%llu file; the streaming store reads TP=1 files (one extent per "
          "layer)",
          f.path().c_str(), (unsigned long long)tp);
    }
  }
  const auto& ext = f.extents();
  if (int(ext.size()) < m.cfg.num_layers + 1) {
    return Errorf("%s: %zu extents, expected %d (model-level + one per layer)", f.path().c_str(),
                  ext.size(), m.cfg.num_layers + 1);
  }
  m.globals_bytes = AlignExtent(f, kGlobalExtent).bytes;
  for (int l = 0; l < m.cfg.num_layers; ++l) {
    m.layer_bytes.push_back(AlignExtent(f, LayerExtent(l)).bytes);
  }
  m.file_bytes = f.file_size();
  return m;
}

AlignedExtent AlignExtent(const GgufFile& f, int e) {
  const GgufExtent& x = f.extents()[size_t(e)];
  const uint64_t abs = f.data_offset() + x.offset;
  AlignedExtent a;
  a.offset = AlignDown(abs, kDirectIoAlignment);
  a.lead = abs - a.offset;
  a.bytes = AlignUp(a.lead + x.size, kDirectIoAlignment);
  return a;
}

// ---- Open: allocation and the one-time load ------------------------------------------------

StatusOr<std::unique_ptr<StreamingStore>> StreamingStore::Open(const std::string& path,
                                                               const StreamingOptions& opts) {
  std::unique_ptr<StreamingStore> s(new StreamingStore(opts.budget_bytes));
  s->opts_ = opts;
  ASSIGN_OR_RETURN(s->file_, GgufFile::Open(path));
  ASSIGN_OR_RETURN(HostFootprint layout, ReadHostFootprint(*s->file_));
  s->cfg_ = layout.cfg;
  const int L = s->cfg_.num_layers;
  if (s->opts_.resident.empty()) s->opts_.resident.assign(size_t(L), false);
  if (int(s->opts_.resident.size()) != L) {
    return Errorf("streaming store: resident set has %zu entries for %d layers",
                  s->opts_.resident.size(), L);
  }
  for (int l = 0; l < L; ++l) {
    if (!s->opts_.resident[size_t(l)]) s->cycle_.push_back(l);
  }
  const StreamingOptions& o = s->opts_;
  if (!s->cycle_.empty() && o.staging_slots < 1) {
    return Errorf("streaming store: layers are streamed but there are no staging slots");
  }
  ASSIGN_OR_RETURN(s->reader_, FileReader::Open(path, o.reader));

  const GgufFile& f = *s->file_;
  for (int l = 0; l < L; ++l) s->reads_.push_back(AlignExtent(f, LayerExtent(l)));
  ASSIGN_OR_RETURN(s->globals_buf_, HostBuffer::Allocate(layout.globals_bytes, &s->account_,
                                                         "model-level tensors", o.huge_pages));
  s->resident_bufs_.resize(size_t(L));
  uint64_t slot_bytes = 0;
  for (int l = 0; l < L; ++l) {
    if (o.resident[size_t(l)]) {
      ASSIGN_OR_RETURN(s->resident_bufs_[size_t(l)],
                       HostBuffer::Allocate(layout.layer_bytes[size_t(l)], &s->account_,
                                            StrFormat("resident layer %d", l), o.huge_pages));
    } else {
      slot_bytes = std::max(slot_bytes, layout.layer_bytes[size_t(l)]);
    }
  }
  if (!s->cycle_.empty()) {
    s->slots_.resize(size_t(o.staging_slots));
    for (int i = 0; i < o.staging_slots; ++i) {
      ASSIGN_OR_RETURN(
          s->slots_[size_t(i)].buf,
          HostBuffer::Allocate(slot_bytes, &s->account_, StrFormat("staging slot %d", i),
                               /*huge_pages=*/true));
    }
  }
  if (o.verbose) {
    std::fprintf(stderr, "streaming store: %s\nstreaming store: allocated %s of %s: %s\n",
                 s->Describe().c_str(), FormatBytes(s->account_.used()).c_str(),
                 o.budget_bytes ? FormatBytes(o.budget_bytes).c_str() : "unlimited",
                 s->account_.Ledger().c_str());
  }
  RETURN_IF_ERROR(s->LoadResident());

  // Streamed layers: views bound once against slot 0, shifted to whichever slot holds them.
  ForEachTensor(s->cfg_, [&](const TensorSpec& spec) {
    if (spec.layer == 0) s->members_.push_back(spec.layer_slot);
  });
  s->templates_.resize(size_t(L));
  if (!s->cycle_.empty()) {
    for (int l : s->cycle_) {
      RETURN_IF_ERROR(BindLayer(f, s->cfg_, l, s->slots_[0].buf.data() + s->reads_[size_t(l)].lead,
                                &s->templates_[size_t(l)]));
    }
    std::vector<iovec> iov;
    for (Slot& slot : s->slots_) iov.push_back(iovec{slot.buf.data(), slot.buf.size()});
    s->reader_->RegisterBuffers(iov);
  }
  s->acquired_at_.resize(size_t(L));
  s->stats_.layers.assign(size_t(L), LayerTiming{});
  if (!s->cycle_.empty()) {
    s->io_thread_ = std::thread([p = s.get()] { p->IoLoop(); });
    std::lock_guard<std::mutex> lock(s->mu_);
    s->Issue();
  }
  return s;
}

Status StreamingStore::LoadResident() {
  const GgufFile& f = *file_;
  const int L = cfg_.num_layers;
  const AlignedExtent g = AlignExtent(f, kGlobalExtent);
  std::vector<ReadRequest> reqs;
  reqs.push_back(
      ReadRequest{.offset = g.offset, .bytes = g.bytes, .dst = globals_buf_.data(), .tag = 0});
  for (int l = 0; l < L; ++l) {
    if (!resident_bufs_[size_t(l)].data()) continue;
    reqs.push_back(ReadRequest{.offset = reads_[size_t(l)].offset,
                               .bytes = reads_[size_t(l)].bytes,
                               .dst = resident_bufs_[size_t(l)].data(),
                               .tag = uint64_t(l + 1)});
  }
  const uint64_t huge_before = AnonHugePageBytes();
  const auto start = Clock::now();
  uint64_t total = 0, done = 0;
  for (const ReadRequest& r : reqs) total += r.bytes;
  std::function<void(uint64_t)> finished;
  if (opts_.load_progress && reqs.size() > 1) {
    finished = [&](uint64_t tag) {
      for (const ReadRequest& r : reqs) done += r.tag == tag ? r.bytes : 0;
      opts_.load_progress(done, total);
    };
  }
  RETURN_IF_ERROR(reader_->ReadAll(reqs, finished));
  stats_.open_load_s = Secs(Clock::now() - start);
  const uint64_t huge_after = AnonHugePageBytes();
  stats_.open_huge_bytes = huge_after > huge_before ? huge_after - huge_before : 0;
  for (const ReadRequest& r : reqs) stats_.open_load_bytes += r.bytes;
  if (opts_.verbose) {
    std::string huge;
    if (opts_.huge_pages) {
      const std::string mode = TransparentHugePageMode();
      huge = StrFormat(", %s of it on 2 MiB pages (transparent huge pages: %s)",
                       FormatBytes(stats_.open_huge_bytes).c_str(),
                       mode.empty() ? "not in this kernel" : mode.c_str());
    }
    std::fprintf(stderr, "streaming store: loaded %s in %.2f s (%.2f GB/s)%s\n",
                 FormatBytes(stats_.open_load_bytes).c_str(), stats_.open_load_s,
                 stats_.open_load_bytes / std::max(stats_.open_load_s, 1e-9) / 1e9, huge.c_str());
  }
  if (opts_.verify_checksums) {
    for (const ReadRequest& r : reqs) {
      const int e = int(r.tag);  // tag 0 = globals = extent 0; tag l+1 = layer l = extent l+1
      const GgufExtent& x = f.extents()[size_t(e)];
      if (XXH64(r.dst + AlignExtent(f, e).lead, x.size, 0) != x.xxh64) {
        return Errorf("%s: checksum mismatch in extent %d (file offset %llu, %llu bytes)",
                      f.path().c_str(), e, (unsigned long long)(f.data_offset() + x.offset),
                      (unsigned long long)x.size);
      }
    }
  }
  RETURN_IF_ERROR(BindGlobals(f, cfg_, globals_buf_.data() + g.lead, &globals_));
  templates_.resize(size_t(L));
  for (int l = 0; l < L; ++l) {
    if (!resident_bufs_[size_t(l)].data()) continue;
    RETURN_IF_ERROR(BindLayer(f, cfg_, l, resident_bufs_[size_t(l)].data() + reads_[size_t(l)].lead,
                              &templates_[size_t(l)]));
  }
  return Status::Ok();
}

StreamingStore::~StreamingStore() {
  if (io_thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_io_.notify_all();
    io_thread_.join();
  }
  reader_.reset();  // before the buffers it may have registered
}

std::string StreamingStore::Describe() const {
  int resident = 0;
  for (bool r : opts_.resident) resident += r;
  const std::string mode = cycle_.empty() ? "nothing streamed"
                           : opts_.on_demand
                               ? "reads on demand (no prefetch)"
                               : StrFormat("a ring (prefetch depth %zu)", slots_.size() - 1);
  return StrFormat("%s; %zu staging slots x %s, %s; %d of %d layers resident",
                   reader_->Describe().c_str(), slots_.size(),
                   FormatBytes(slots_.empty() ? 0 : slots_[0].buf.size()).c_str(), mode.c_str(),
                   resident, cfg_.num_layers);
}

LayerWeights StreamingStore::Rebase(int layer, const char* buf) const {
  LayerWeights w = templates_[size_t(layer)];
  // Templates point into slot 0; every slot has the same layout, so views shift by the distance
  // between the buffers (integer arithmetic: the buffers are different objects).
  const uintptr_t from = reinterpret_cast<uintptr_t>(slots_[0].buf.data());
  const uintptr_t to = reinterpret_cast<uintptr_t>(buf);
  for (TensorView LayerWeights::*m : members_) {
    TensorView& v = w.*m;
    v.data = reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(v.data) - from + to);
    if (v.scales) {
      v.scales = reinterpret_cast<const Half*>(reinterpret_cast<uintptr_t>(v.scales) - from + to);
    }
  }
  return w;
}

// ---- the schedule (mu_ held) ---------------------------------------------------------------

void StreamingStore::SetState(Slot& s, SlotState from, SlotState to) {
  GLM_CHECK_MSG(s.state == from, "staging slot of layer %d: %s -> %s, but it is %s", s.layer,
                StateName(int(from)), StateName(int(to)), StateName(int(s.state)));
  s.state = to;
}

bool StreamingStore::IssueNext() {
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (s.state != SlotState::kFree) continue;
    SetState(s, SlotState::kFree, SlotState::kReading);
    s.layer = cycle_[cursor_];
    cursor_ = (cursor_ + 1) % cycle_.size();
    s.seq = next_seq_++;
    s.status = Status::Ok();
    s.weights = Rebase(s.layer, s.buf.data());
    to_read_.push_back(int(i));
    cv_io_.notify_one();
    return true;
  }
  return false;
}

void StreamingStore::Issue() {
  // A ring: every free slot receives the next streamed layer of the cycle at once, so the reader
  // always has the next read queued behind the current one (no drain between layers). On demand
  // (the baseline), reads wait for the Acquire that needs them.
  if (opts_.on_demand) return;
  while (IssueNext()) {
  }
}

StreamingStore::Slot* StreamingStore::FindOldest(int layer, bool in_use) {
  Slot* best = nullptr;
  for (Slot& s : slots_) {
    const bool match = in_use ? s.state == SlotState::kInUse
                              : (s.state == SlotState::kReading || s.state == SlotState::kReady);
    if (match && s.layer == layer && (!best || s.seq < best->seq)) best = &s;
  }
  return best;
}

void StreamingStore::Resync(std::unique_lock<std::mutex>& lock, int layer) {
  ++stats_.resyncs;
  // Reads in flight are still being written by the kernel: let them land, then drop them.
  WaitReadsLanded(lock);
  for (Slot& s : slots_) {
    if (s.state == SlotState::kReady) SetState(s, SlotState::kReady, SlotState::kFree);
  }
  cursor_ = size_t(std::find(cycle_.begin(), cycle_.end(), layer) - cycle_.begin());
  next_acquire_seq_ = next_seq_;
}

StatusOr<const LayerWeights*> StreamingStore::Acquire(int layer) {
  if (layer < 0 || layer >= cfg_.num_layers) {
    return Errorf("layer %d outside [0, %d)", layer, cfg_.num_layers);
  }
  const auto t0 = Clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  if (!error_.ok()) return error_;
  LayerTiming& timing = stats_.layers[size_t(layer)];
  ++timing.acquires;
  if (opts_.resident[size_t(layer)]) {
    acquired_at_[size_t(layer)] = t0;
    return &templates_[size_t(layer)];
  }
  Slot* s = FindOldest(layer, /*in_use=*/false);
  // In order: the oldest read outstanding is this layer's, or none is and it is next in the cycle.
  const bool in_order =
      s ? s->seq == next_acquire_seq_ : cycle_[cursor_] == layer && next_seq_ == next_acquire_seq_;
  if (!in_order) {
    Resync(lock, layer);
    s = nullptr;
  }
  if (!s) {
    // Not issued yet: depth 0, or the cycle was just restarted here.
    if (!IssueNext()) {
      return Errorf(
          "layer %d: all %zu staging slots are in use (each Acquire needs a Release "
          "before the slots run out)",
          layer, slots_.size());
    }
    s = FindOldest(layer, false);
    GLM_CHECK(s != nullptr);
  }
  cv_ready_.wait(lock, [&] { return s->state == SlotState::kReady; });
  SetState(*s, SlotState::kReady, SlotState::kInUse);
  next_acquire_seq_ = s->seq + 1;
  if (!s->status.ok()) {
    error_ = s->status;
    return error_;
  }
  const auto t1 = Clock::now();
  timing.wait_s += Secs(t1 - t0);
  acquired_at_[size_t(layer)] = t1;
  return &s->weights;
}

void StreamingStore::Release(int layer) {
  GLM_CHECK_MSG(layer >= 0 && layer < cfg_.num_layers, "Release(%d)", layer);
  const auto now = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  LayerTiming& timing = stats_.layers[size_t(layer)];
  if (opts_.resident[size_t(layer)]) {
    timing.compute_s += Secs(now - acquired_at_[size_t(layer)]);
    return;
  }
  Slot* s = FindOldest(layer, /*in_use=*/true);
  GLM_CHECK_MSG(s != nullptr, "Release(%d) of a layer that is not acquired", layer);
  if (s->status.ok()) timing.compute_s += Secs(now - acquired_at_[size_t(layer)]);
  SetState(*s, SlotState::kInUse, SlotState::kFree);
  if (error_.ok()) Issue();
}

StreamingStats StreamingStore::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void StreamingStore::ResetStats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.layers.assign(size_t(cfg_.num_layers), LayerTiming{});
  stats_.bytes_read = 0;
  stats_.resyncs = 0;
}

void StreamingStore::WaitForReads() {
  std::unique_lock<std::mutex> lock(mu_);
  WaitReadsLanded(lock);
}

void StreamingStore::WaitReadsLanded(std::unique_lock<std::mutex>& lock) {
  cv_ready_.wait(lock, [&] {
    for (const Slot& s : slots_) {
      if (s.state == SlotState::kReading) return false;
    }
    return true;
  });
}

// ---- the I/O thread ------------------------------------------------------------------------

void StreamingStore::IoLoop() {
  struct Job {
    int layer = -1;
    char* buf = nullptr;  // the slot's buffer: the read's first byte
    Clock::time_point enqueued;
  };
  std::vector<Job> jobs(slots_.size());
  std::vector<int> take;
  std::vector<ReadCompletion> done;
  take.reserve(slots_.size());
  done.reserve(slots_.size());
  Clock::time_point last_done = Clock::now();
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (reader_->pending() == 0) {
        cv_io_.wait(lock, [&] { return stop_ || !to_read_.empty(); });
      }
      if (stop_) break;
      take.swap(to_read_);
      for (int i : take) {
        jobs[size_t(i)] = Job{slots_[size_t(i)].layer, slots_[size_t(i)].buf.data(), {}};
      }
    }
    const auto now = Clock::now();
    for (int i : take) {
      Job& j = jobs[size_t(i)];
      j.enqueued = now;
      reader_->Enqueue(ReadRequest{.offset = reads_[size_t(j.layer)].offset,
                                   .bytes = reads_[size_t(j.layer)].bytes,
                                   .dst = j.buf,
                                   .tag = uint64_t(i)});
    }
    take.clear();
    done.clear();
    reader_->Poll(/*wait=*/true, &done);
    if (done.empty()) continue;
    const auto t = Clock::now();
    for (ReadCompletion& c : done) {
      const Job& j = jobs[size_t(c.tag)];
      if (c.status.ok() && opts_.verify_checksums) {
        const GgufExtent& x = file_->extents()[size_t(LayerExtent(j.layer))];
        if (XXH64(j.buf + reads_[size_t(j.layer)].lead, x.size, 0) != x.xxh64) {
          c.status = Errorf("%s: checksum mismatch in layer %d (file offset %llu, %llu bytes)",
                            file_->path().c_str(), j.layer,
                            (unsigned long long)(file_->data_offset() + x.offset),
                            (unsigned long long)x.size);
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (ReadCompletion& c : done) {
        const Job& j = jobs[size_t(c.tag)];
        Slot& s = slots_[size_t(c.tag)];
        s.status = std::move(c.status);
        SetState(s, SlotState::kReading, SlotState::kReady);
        LayerTiming& timing = stats_.layers[size_t(j.layer)];
        ++timing.reads;
        // FIFO reader: this read started when it was queued or when the previous one ended.
        timing.read_s += Secs(t - std::max(j.enqueued, last_done));
        last_done = t;
        stats_.bytes_read += reads_[size_t(j.layer)].bytes;
      }
      stats_.reader = reader_->stats();
    }
    cv_ready_.notify_all();
  }
  reader_->Abandon();
}

// ---- ComputeOnlyStore ----------------------------------------------------------------------

StatusOr<std::unique_ptr<ComputeOnlyStore>> ComputeOnlyStore::Open(const std::string& path,
                                                                   const ReaderOptions& ropts,
                                                                   bool huge_pages) {
  std::unique_ptr<ComputeOnlyStore> s(new ComputeOnlyStore());
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(path));
  ASSIGN_OR_RETURN(HostFootprint layout, ReadHostFootprint(*f));
  s->cfg_ = layout.cfg;
  ASSIGN_OR_RETURN(std::unique_ptr<FileReader> reader, FileReader::Open(path, ropts));
  const AlignedExtent g = AlignExtent(*f, kGlobalExtent), l0 = AlignExtent(*f, LayerExtent(0));
  ASSIGN_OR_RETURN(s->globals_buf_, HostBuffer::Allocate(g.bytes, nullptr, "globals", huge_pages));
  ASSIGN_OR_RETURN(s->layer_buf_, HostBuffer::Allocate(l0.bytes, nullptr, "layer 0", huge_pages));
  const ReadRequest reqs[] = {
      {.offset = g.offset, .bytes = g.bytes, .dst = s->globals_buf_.data()},
      {.offset = l0.offset, .bytes = l0.bytes, .dst = s->layer_buf_.data()}};
  RETURN_IF_ERROR(reader->ReadAll(reqs));
  RETURN_IF_ERROR(BindGlobals(*f, s->cfg_, s->globals_buf_.data() + g.lead, &s->globals_));
  RETURN_IF_ERROR(BindLayer(*f, s->cfg_, 0, s->layer_buf_.data() + l0.lead, &s->layer_));
  s->compute_s_.assign(size_t(s->cfg_.num_layers), 0.0);
  return s;
}

StatusOr<const LayerWeights*> ComputeOnlyStore::Acquire(int layer) {
  if (layer < 0 || layer >= cfg_.num_layers) {
    return Errorf("layer %d outside [0, %d)", layer, cfg_.num_layers);
  }
  acquired_at_ = std::chrono::steady_clock::now();
  return &layer_;
}

void ComputeOnlyStore::Release(int layer) {
  compute_s_[size_t(layer)] += Secs(std::chrono::steady_clock::now() - acquired_at_);
}

}  // namespace glm
