// Model-based randomized test of the replica engine (src/journal).
//
// Each seed drives one Replica on a SimEnv with a ManualClock through a random sequence of
// appends, markers, clock jumps, retention, pins, held views, overlays, commits, reopens,
// crashes and injected I/O faults, and compares it after each step with a simple model:
// every block's versions by seq (so the volume as of any point is known exactly), the
// markers, the pins and each overlay's contents.
//
// Oracle:
//   - every point the replica accepts reads, byte for byte, as the model's volume at it;
//   - a point it refuses must be one retention may legitimately have removed (kOutOfRange
//     below the oldest point, kNotFound below any_point_from and not a marker), and never a
//     pinned point, an overlay's point or the point of an open view;
//   - oldest / any_point_from only move forward, and only as far as the retention calls
//     made so far allow; a marker disappears only if it was old enough and another marker
//     of its tier bucket that ranks at least as high survives, and after a retention call
//     each bucket keeps at most one (pinned and open points apart);
//   - appends are durable on return; overlay data is durable after Flush (and kept on a
//     clean close), and a crash loses at most the blocks written since the last flush.
//
// FERRY_MODEL_SEEDS (default 200) and FERRY_MODEL_SEED_START (default 1) choose the seeds;
// a failure names the seed and step to replay with FERRY_MODEL_SEEDS=1; a crash, a
// sanitizer's abort or a seed running over a minute names the seed on stderr.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "env/sim_env.h"
#include "journal/overlay.h"
#include "journal/replica.h"
#include "journal/view.h"

// Present only in a sanitizer build (see SeedWatch).
extern "C" void __sanitizer_set_death_callback(void (*)()) __attribute__((weak));

namespace ferry::journal {
namespace {

constexpr int64_t kMinute = 60 * kNanosPerSecond;
constexpr const char* kDir = "/vol";
// FERRY_MODEL_VERBOSE=1 prints every step, for replaying a failing seed.
const bool kVerbose = std::getenv("FERRY_MODEL_VERBOSE") != nullptr;

template <typename... Args>
void Log(const Args&... args) {
  if (!kVerbose) return;
  std::ostringstream line;
  (line << ... << args);
  std::printf("%s\n", line.str().c_str());
}

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 10);
}

PointSpec SeqSpec(uint64_t seq) {
  PointSpec p;
  p.kind = PointSpec::Kind::kSeq;
  p.seq = seq;
  return p;
}

PointSpec KindSpec(MarkerKind k) {
  PointSpec p;
  p.kind = PointSpec::Kind::kLatestOfKind;
  p.marker_kind = k;
  return p;
}

PointSpec TimeSpec(int64_t t) {
  PointSpec p;
  p.kind = PointSpec::Kind::kTime;
  p.time_ns = t;
  return p;
}

PointSpec IdSpec(const Id128& id) {
  PointSpec p;
  p.kind = PointSpec::Kind::kMarkerId;
  p.marker_id = id;
  return p;
}

int KindRank(MarkerKind k) {
  switch (k) {
    case MarkerKind::kAppConsistent:
      return 3;
    case MarkerKind::kGroupConsistent:
      return 2;
    case MarkerKind::kCrashConsistent:
      return 1;
  }
  return 0;
}

// The volume's whole history: every block's versions in seq order, and every record's
// timestamp. Never forgets, so the state as of any seq can be read back.
class HistoryModel {
 public:
  HistoryModel(uint64_t size, uint32_t bs) : bs_(bs), blocks_(size / bs) {}

  uint64_t last_seq() const { return ts_.size(); }
  int64_t timestamp(uint64_t seq) const { return ts_.at(seq - 1); }
  int64_t last_timestamp() const { return ts_.empty() ? 0 : ts_.back(); }

  // r.seq and r.timestamp_ns are final.
  void Apply(const Record& r) {
    ASSERT_EQ(r.seq, last_seq() + 1);
    ts_.push_back(r.timestamp_ns);
    if (r.type == RecordType::kMarker) return;
    const uint64_t first = r.offset / bs_;
    for (uint64_t i = 0; i < r.length / bs_; ++i) {
      std::shared_ptr<const std::string> data;
      if (r.type == RecordType::kWrite) {
        data = std::make_shared<const std::string>(r.data.substr(i * bs_, bs_));
      }
      blocks_[first + i].push_back({r.seq, std::move(data)});
    }
  }

  std::string Read(uint64_t point, uint64_t offset, size_t n) const {
    std::string out(n, '\0');
    uint64_t pos = offset;
    const uint64_t end = offset + n;
    while (pos < end) {
      const uint64_t b = pos / bs_;
      const uint64_t in = pos % bs_;
      const size_t len = static_cast<size_t>(std::min<uint64_t>(bs_ - in, end - pos));
      const auto& v = blocks_[b];
      auto it = std::upper_bound(v.begin(), v.end(), point,
                                 [](uint64_t p, const Version& x) { return p < x.seq; });
      if (it != v.begin() && std::prev(it)->data) {
        std::memcpy(out.data() + (pos - offset), std::prev(it)->data->data() + in, len);
      }
      pos += len;
    }
    return out;
  }

  // For a failure message: the block's versions, and which of them `got` (a whole block
  // read at some point) matches.
  std::string Explain(uint64_t block, const std::string& got) const {
    std::string out = "block " + std::to_string(block) + " versions:";
    std::string matches;
    const std::string zeros(bs_, '\0');
    if (got == zeros) matches += " zeros";
    for (const Version& v : blocks_[block]) {
      out += " " + std::to_string(v.seq) + (v.data ? "w" : "z");
      if (v.data && *v.data == got) matches += " seq " + std::to_string(v.seq);
    }
    return out + "; the replica returned:" + (matches.empty() ? " none of them" : matches);
  }

  // Largest seq whose timestamp is <= t (0 if none); timestamps never decrease.
  uint64_t SeqAtTime(int64_t t) const {
    return static_cast<uint64_t>(std::upper_bound(ts_.begin(), ts_.end(), t) - ts_.begin());
  }

 private:
  struct Version {
    uint64_t seq;
    std::shared_ptr<const std::string> data;  // null: zeros
  };
  const uint32_t bs_;
  std::vector<std::vector<Version>> blocks_;
  std::vector<int64_t> ts_;  // ts_[seq - 1]
};

struct MarkerModel {
  MarkerInfo info;
  int64_t ts = 0;
};

struct OverlayModel {
  uint64_t point = 0;
  std::string now;                     // contents as acknowledged
  std::string flushed;                 // contents as of the last successful flush
  std::set<uint64_t> dirty;            // blocks written since the last successful flush
  std::set<uint64_t> changed;          // blocks users wrote (ChangedExtents)
  std::set<uint64_t> changed_flushed;  // ... as of the last successful flush
  bool flush_failed = false;  // since the last successful flush: dirty blocks may be durable
  std::shared_ptr<Overlay> handle;
};

// One retention call: what it was allowed to drop.
struct RetentionAttempt {
  int64_t now;
  RetentionPolicy policy;
  std::set<uint64_t> protected_points;
};

class ModelRun {
 public:
  explicit ModelRun(uint64_t seed) : seed_(seed), rng_(seed) {}

  void Run();
  int step() const { return step_; }
  const std::string& last_op() const { return op_; }
  bool committed_end() const { return ended_by_commit_; }

 private:
  // --- randomness
  uint64_t Rand(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  std::string RandomBytes(size_t n);

  // --- setup and lifecycle
  ReplicaOptions Options();
  void Create();
  void DropHandles();
  enum class Close { kClean, kCrashDropAll, kCrash };
  void Reopen(Close how);
  void AfterReopen(Close how);

  // --- operations
  void Step();
  Record RandomDataRecord();
  Record RandomMarker();
  void DoAppend(std::vector<Record> records);
  void OpAppend();
  void OpInvalidAppend();
  void OpClock();
  void OpRetention();
  void OpPin();
  void OpUnpin();
  void OpView();
  void OpCreateOverlay();
  void OpOverlayWrite();
  void OpOverlayZero();
  void OpOverlayFlush();
  void OpDiscardOverlay();
  void OpCommit();
  void InterruptCommit(const std::string& name, OverlayModel& m);
  void OpFault();

  void ModelOverlayWrite(OverlayModel& m, uint64_t off, std::string_view data, bool fua);
  void ModelOverlayFlush(OverlayModel& m);
  void AdoptOverlayBlocks(OverlayModel& m, const std::set<uint64_t>& blocks);

  // --- checks
  void CheckLight();
  void CheckNothingLeftButTheOverlay();
  void CheckFull();
  void CheckStats();
  using Removed = std::vector<std::pair<uint64_t, MarkerModel>>;
  void CheckMarkers(Removed* removed = nullptr);
  void CheckMarkerRemovalLegit(uint64_t seq, const MarkerModel& m);
  void CheckBucketWinners(const RetentionAttempt& a, const Removed& removed);
  void CheckPins();
  void CheckPoint(uint64_t p, int reads, bool full);
  void CheckReads(const std::shared_ptr<View>& v, uint64_t p, int reads, bool full);
  void CheckOverlay(const std::string& name, OverlayModel& m, int reads, bool full);
  void CheckResolveSpecs();

  // --- model queries
  uint64_t last() const { return hist_->last_seq(); }
  std::set<uint64_t> ProtectedPoints() const;
  bool IsProtected(uint64_t p) const { return ProtectedPoints().count(p) > 0; }
  uint64_t RandomValidPoint();
  uint64_t NextTimestamp(int64_t requested, int64_t* floor) const;

  const uint64_t seed_;
  std::mt19937_64 rng_;
  int step_ = 0;
  std::string op_;
  bool ended_by_commit_ = false;

  SimEnv env_;
  ManualClock clock_;
  uint64_t size_ = 0;
  uint32_t bs_ = 4096;
  uint64_t segment_target_ = 0;
  size_t merge_batch_runs_ = 0;
  uint32_t recycle_segments_ = 0;
  std::shared_ptr<Replica> r_;

  std::unique_ptr<HistoryModel> hist_;
  std::map<uint64_t, MarkerModel> markers_;  // the markers the replica still has
  std::map<std::string, uint64_t> pins_;     // user pins: owner -> seq
  std::map<std::string, OverlayModel> overlays_;
  std::vector<std::pair<uint64_t, std::shared_ptr<View>>> views_;  // held open across steps
  std::vector<RetentionAttempt> attempts_;
  int overlay_counter_ = 0;

  // The replica's state as last observed, and how far retention may have moved it.
  uint64_t oldest_seen_ = 0, apf_seen_ = 0;
  uint64_t oldest_bound_ = 0, apf_bound_ = 0;

  // Unacknowledged outcomes of failed operations, settled at the next reopen.
  std::vector<Record> uncertain_records_;           // a failed append: a prefix may be present
  std::map<std::string, uint64_t> maybe_overlays_;  // failed creates: name -> point
  std::set<std::string> maybe_discarded_;           // failed discards
  std::map<std::string, std::optional<uint64_t>> maybe_pins_;  // failed pin/unpin: the other value
  bool sticky_error_ = false;  // a failed append: the replica refuses appends until reopened
};

#define RUN_STEP(x)                                 \
  do {                                              \
    x;                                              \
    if (::testing::Test::HasFatalFailure()) return; \
  } while (0)

std::string ModelRun::RandomBytes(size_t n) {
  std::string s(n, '\0');
  const uint64_t pick = Rand(8);
  if (pick == 0) return s;  // all zeros: a write that reads like a hole
  if (pick == 1) {
    std::fill(s.begin(), s.end(), static_cast<char>(1 + Rand(255)));
    return s;
  }
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng_();
    std::memcpy(s.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return s;
}

ReplicaOptions ModelRun::Options() {
  ReplicaOptions o;
  o.env = &env_;
  o.clock = &clock_;
  o.segment_target_bytes = segment_target_;
  o.merge_batch_runs = merge_batch_runs_;
  o.recycle_segments = recycle_segments_;
  return o;
}

void ModelRun::Create() {
  bs_ = Chance(0.5) ? 512 : 4096;
  // 64 KiB .. 1 MiB; with 512-byte blocks the larger volumes span several index chunks.
  const uint64_t kib = 64ull << Rand(5);
  size_ = kib * 1024 - (Chance(0.3) ? bs_ * Rand(8) : 0);
  segment_target_ = uint64_t{2048} << Rand(5);  // 2 KiB .. 32 KiB: segments roll constantly
  merge_batch_runs_ = Chance(0.5) ? 1 + Rand(8) : size_t{1} << 20;  // merges in many batches
  recycle_segments_ = Chance(0.5) ? static_cast<uint32_t>(1 + Rand(4)) : 0;  // merged files reused
  hist_ = std::make_unique<HistoryModel>(size_, bs_);
  CreateParams p;
  p.size = size_;
  p.block_size = bs_;
  for (auto& b : p.volume_id) b = static_cast<uint8_t>(rng_());
  p.history_id = rng_() | 1;
  auto r = Replica::Create(kDir, p, Options());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  r_ = std::move(r).value();
  ASSERT_EQ(r_->size(), size_);
  ASSERT_EQ(r_->block_size(), bs_);
  ASSERT_EQ(r_->volume_id(), p.volume_id);
  ASSERT_EQ(r_->history_id(), p.history_id);
}

void ModelRun::DropHandles() {
  views_.clear();
  for (auto& [name, m] : overlays_) m.handle.reset();
  r_.reset();
}

// Reopens the replica: cleanly (drop and open), or after a power loss.
void ModelRun::Reopen(Close how) {
  // The power goes while the replica is open; only then are the objects dropped.
  if (how == Close::kCrashDropAll) env_.CrashDropAll();
  if (how == Close::kCrash) env_.Crash(rng_());
  DropHandles();
  auto r = Replica::Open(kDir, Options());
  ASSERT_TRUE(r.ok()) << "reopen after " << (how == Close::kClean ? "clean close" : "crash") << ": "
                      << r.status().ToString();
  r_ = std::move(r).value();
  sticky_error_ = false;
  AfterReopen(how);
  if (::testing::Test::HasFatalFailure()) return;
  // A second open of the same state must see the same thing (recovery is idempotent).
  if (Chance(0.2)) {
    DropHandles();
    auto again = Replica::Open(kDir, Options());
    ASSERT_TRUE(again.ok()) << "second open: " << again.status().ToString();
    r_ = std::move(again).value();
    for (auto& [name, m] : overlays_) {
      auto o = r_->GetOverlay(name);
      ASSERT_TRUE(o.ok()) << name << ": " << o.status().ToString();
      m.handle = *o;
    }
  }
  CheckFull();
}

// Settles what failed operations and a crash may or may not have left behind.
void ModelRun::AfterReopen(Close how) {
  // Appends: every acknowledged record is there; of an unacknowledged batch, a prefix.
  const ReplicaStats st = r_->Stats();
  ASSERT_GE(st.last_seq, last()) << "acknowledged records were lost";
  ASSERT_LE(st.last_seq, last() + uncertain_records_.size()) << "records appeared from nowhere";
  const size_t adopt = static_cast<size_t>(st.last_seq - last());
  for (size_t i = 0; i < adopt; ++i) {
    const Record& rec = uncertain_records_[i];
    RUN_STEP(hist_->Apply(rec));
    if (rec.type == RecordType::kMarker) markers_[rec.seq] = {rec.marker, rec.timestamp_ns};
  }
  uncertain_records_.clear();

  // Overlays: those whose creation failed may exist, those whose discard failed may remain.
  std::vector<std::string> names = r_->ListOverlays();
  std::set<std::string> present(names.begin(), names.end());
  for (const std::string& name : names) {
    if (overlays_.count(name)) continue;
    auto it = maybe_overlays_.find(name);
    ASSERT_TRUE(it != maybe_overlays_.end()) << "overlay " << name << " appeared from nowhere";
    OverlayModel m;
    m.point = it->second;
    m.now = hist_->Read(m.point, 0, size_);
    m.flushed = m.now;
    overlays_[name] = std::move(m);
  }
  for (auto it = overlays_.begin(); it != overlays_.end();) {
    if (present.count(it->first)) {
      ++it;
      continue;
    }
    ASSERT_TRUE(maybe_discarded_.count(it->first))
        << "overlay " << it->first << " vanished on reopen";
    it = overlays_.erase(it);
  }
  maybe_overlays_.clear();

  for (auto& [name, m] : overlays_) {
    auto o = r_->GetOverlay(name);
    ASSERT_TRUE(o.ok()) << name << ": " << o.status().ToString();
    m.handle = *o;
    ASSERT_EQ(m.handle->point(), m.point) << name;
    ASSERT_EQ(m.handle->state(), OverlayState::kActive) << name;
    // An overlay whose discard failed was closed without a flush, as in a crash.
    const bool discarding = maybe_discarded_.count(name) > 0;
    if (how != Close::kClean || discarding) {
      // What was flushed is there, exactly so if nothing unsynced survived; blocks written
      // since may hold old, new or torn data after a partial loss. ChangedExtents comes from
      // blocks.log: only flushed user writes count.
      m.now = m.flushed;
      m.changed = m.changed_flushed;
      if (how == Close::kCrash || discarding || m.flush_failed) {
        RUN_STEP(AdoptOverlayBlocks(m, m.dirty));
        // An unsynced blocks.log entry may have survived too.
        for (const BlockExtent& e : m.handle->ChangedExtents()) {
          for (uint64_t b = e.first_block; b < e.first_block + e.count; ++b) {
            if (m.dirty.count(b)) m.changed.insert(b);
          }
        }
      }
    }
    m.dirty.clear();
    m.flushed = m.now;
    m.changed_flushed = m.changed;
    m.flush_failed = false;
  }
  maybe_discarded_.clear();

  // Pins: a failed Pin/Unpin may or may not have reached the MANIFEST.
  std::map<std::string, uint64_t> user_pins;
  for (const Pin& p : r_->Pins()) {
    if (p.owner.rfind("overlay:", 0) == 0) continue;
    user_pins[p.owner] = p.seq;
  }
  for (const auto& [owner, alt] : maybe_pins_) {
    auto have = user_pins.find(owner);
    auto model = pins_.find(owner);
    const std::optional<uint64_t> now_value =
        have == user_pins.end() ? std::nullopt : std::optional<uint64_t>(have->second);
    const std::optional<uint64_t> model_value =
        model == pins_.end() ? std::nullopt : std::optional<uint64_t>(model->second);
    ASSERT_TRUE(now_value == model_value || now_value == alt) << "pin " << owner;
    if (now_value) {
      pins_[owner] = *now_value;
    } else {
      pins_.erase(owner);
    }
  }
  maybe_pins_.clear();
}

// --- operations -------------------------------------------------------------------------

Record ModelRun::RandomDataRecord() {
  const uint64_t blocks = size_ / bs_;
  const uint64_t nb = 1 + Rand(std::min<uint64_t>(Chance(0.1) ? 32 : 4, blocks));
  const uint64_t first = Rand(blocks - nb + 1);
  const uint64_t kind = Rand(10);
  Record r;
  if (kind < 7) {
    r = Record::Write(first * bs_, RandomBytes(nb * bs_));
  } else if (kind < 9) {
    r = Record::Zero(first * bs_, nb * bs_);
  } else {
    r = Record::Trim(first * bs_, nb * bs_);
  }
  return r;
}

Record ModelRun::RandomMarker() {
  const MarkerKind kind = static_cast<MarkerKind>(1 + Rand(3));
  std::string label;
  if (Chance(0.5)) {
    label.resize(Chance(0.05) ? kMaxLabelLength : 1 + Rand(24));
    for (char& c : label) c = static_cast<char>('a' + Rand(26));
  }
  Id128 id{}, group{};
  if (Chance(0.7)) {
    for (auto& b : id) b = static_cast<uint8_t>(rng_());
  }
  if (kind == MarkerKind::kGroupConsistent) {
    for (auto& b : group) b = static_cast<uint8_t>(rng_());
  }
  return Record::Marker(kind, label, id, group);
}

uint64_t ModelRun::NextTimestamp(int64_t requested, int64_t* floor) const {
  int64_t ts = requested != 0 ? requested : clock_.NowNanos();
  ts = std::max(ts, *floor);
  *floor = ts;
  return static_cast<uint64_t>(ts);
}

// Appends records; on success they must get the next seqs and the expected timestamps.
void ModelRun::DoAppend(std::vector<Record> records) {
  for (Record& r : records) {
    if (Chance(0.1))
      r.timestamp_ns = clock_.NowNanos() - static_cast<int64_t>(Rand(12 * 60)) * kMinute;
  }
  if (Chance(0.1)) {
    for (size_t i = 0; i < records.size(); ++i) records[i].seq = last() + 1 + i;
  }
  std::vector<Record> expect = records;
  int64_t floor = hist_->last_timestamp();
  for (size_t i = 0; i < expect.size(); ++i) {
    expect[i].seq = last() + 1 + i;
    expect[i].timestamp_ns = static_cast<int64_t>(NextTimestamp(expect[i].timestamp_ns, &floor));
  }
  auto res = records.size() == 1 && Chance(0.5) ? r_->Append(records[0])
                                                : r_->Append(std::span<Record>(records));
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  ASSERT_EQ(*res, last() + records.size());
  for (const Record& e : expect) {
    RUN_STEP(hist_->Apply(e));
    if (e.type == RecordType::kMarker) markers_[e.seq] = {e.marker, e.timestamp_ns};
  }
}

void ModelRun::OpAppend() {
  std::vector<Record> batch;
  const size_t n = Chance(0.2) ? 2 + Rand(4) : 1;
  for (size_t i = 0; i < n; ++i)
    batch.push_back(Chance(0.85) ? RandomDataRecord() : RandomMarker());
  DoAppend(std::move(batch));
}

// Records that can never be valid are refused with the exact error and change nothing.
void ModelRun::OpInvalidAppend() {
  std::vector<Record> batch;
  Code want;
  switch (Rand(5)) {
    case 0:  // unaligned offset
      batch.push_back(Record::Write(bs_ / 2, std::string(bs_, 'u')));
      want = Code::kInvalidArgument;
      break;
    case 1:  // past the end
      batch.push_back(Record::Zero(size_ - bs_, 2 * bs_));
      want = Code::kOutOfRange;
      break;
    case 2:  // wrong explicit seq
      batch.push_back(Record::Write(0, std::string(bs_, 's')));
      batch.back().seq = last() + 2;
      want = Code::kInvalidArgument;
      break;
    case 3:  // label too long
      batch.push_back(
          Record::Marker(MarkerKind::kAppConsistent, std::string(kMaxLabelLength + 1, 'l')));
      want = Code::kInvalidArgument;
      break;
    default:  // one bad record spoils the batch
      batch.push_back(RandomDataRecord());
      batch.push_back(Record::Trim(0, 0));
      batch.push_back(RandomDataRecord());
      want = Code::kInvalidArgument;
      break;
  }
  auto res = r_->Append(std::span<Record>(batch));
  ASSERT_FALSE(res.ok());
  ASSERT_EQ(res.status().code(), want) << res.status().ToString();
  ASSERT_EQ(r_->Stats().last_seq, last());
}

void ModelRun::OpClock() {
  const uint64_t pick = Rand(20);
  int64_t d;
  if (pick < 10) {
    d = static_cast<int64_t>(1 + Rand(600)) * kNanosPerSecond;
  } else if (pick < 17) {
    d = static_cast<int64_t>(10 + Rand(50)) * kMinute;
  } else {
    d = static_cast<int64_t>(1 + Rand(4)) * kNanosPerHour;
  }
  clock_.Advance(d);
}

std::set<uint64_t> ModelRun::ProtectedPoints() const {
  std::set<uint64_t> out;
  for (const auto& [owner, seq] : pins_) out.insert(seq);
  for (const auto& [name, m] : overlays_) out.insert(m.point);
  for (const auto& [seq, v] : views_) out.insert(seq);
  return out;
}

void ModelRun::OpRetention() {
  RetentionPolicy policy;
  policy.window_ns = static_cast<int64_t>(1 + Rand(6)) * kNanosPerHour;
  policy.any_point_ns = static_cast<int64_t>(10 + Rand(51)) * kMinute;
  policy.tiers.clear();
  policy.tiers.push_back({policy.any_point_ns, static_cast<int64_t>(5 + Rand(16)) * kMinute});
  if (Chance(0.7)) {
    policy.tiers.push_back({policy.any_point_ns + static_cast<int64_t>(30 + Rand(91)) * kMinute,
                            static_cast<int64_t>(30 + Rand(61)) * kMinute});
  }
  policy.keep_group_markers = Chance(0.5);
  const int64_t now = clock_.NowNanos();
  RetentionAttempt a{now, policy, ProtectedPoints()};
  attempts_.push_back(a);
  uint64_t protect = a.protected_points.empty() ? UINT64_MAX : *a.protected_points.begin();
  uint64_t merge = std::min(hist_->SeqAtTime(now - policy.window_ns - 1), protect);
  oldest_bound_ = std::max(oldest_bound_, merge);
  uint64_t thin = hist_->SeqAtTime(now - policy.any_point_ns - 1);
  apf_bound_ = std::max({apf_bound_, thin == 0 ? 0 : thin + 1, oldest_bound_});

  auto rep = r_->ApplyRetention(policy);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  const ReplicaStats st = r_->Stats();
  if (rep->merged_to_seq != 0) {
    ASSERT_EQ(rep->merged_to_seq, st.oldest_point);
  }
  RUN_STEP(CheckStats());
  Removed removed;
  RUN_STEP(CheckMarkers(&removed));
  RUN_STEP(CheckBucketWinners(a, removed));
  RUN_STEP(CheckFull());
}

uint64_t ModelRun::RandomValidPoint() {
  const ReplicaStats st = r_->Stats();
  std::vector<uint64_t> c = {last(), st.oldest_point};
  for (const auto& [seq, m] : markers_) {
    if (seq > st.oldest_point) c.push_back(seq);
  }
  const uint64_t lo = std::max(st.any_point_from, st.oldest_point);
  if (lo <= last()) {
    for (int i = 0; i < 4; ++i) c.push_back(lo + Rand(last() - lo + 1));
  }
  for (uint64_t p : ProtectedPoints()) c.push_back(p);
  return c[Rand(c.size())];
}

void ModelRun::OpPin() {
  const std::string owner = "user-" + std::to_string(Rand(3));
  const ReplicaStats st = r_->Stats();
  if (Chance(0.15)) {
    // Points that do not exist cannot be pinned.
    Status s = r_->Pin(last() + 1 + Rand(3), owner, "beyond");
    ASSERT_EQ(s.code(), Code::kOutOfRange) << s.ToString();
    if (st.oldest_point > 0) {
      s = r_->Pin(Rand(st.oldest_point), owner, "before");
      ASSERT_EQ(s.code(), Code::kOutOfRange) << s.ToString();
    }
    ASSERT_EQ(r_->Pin(1, "", "no owner").code(), Code::kInvalidArgument);
    return;
  }
  const uint64_t p = RandomValidPoint();
  Status s = r_->Pin(p, owner, "model pin " + std::to_string(step_));
  ASSERT_TRUE(s.ok()) << "pin " << p << ": " << s.ToString();
  pins_[owner] = p;
}

void ModelRun::OpUnpin() {
  if (pins_.empty() || Chance(0.1)) {
    ASSERT_EQ(r_->Unpin("nobody").code(), Code::kNotFound);
    return;
  }
  auto it = std::next(pins_.begin(), static_cast<long>(Rand(pins_.size())));
  Status s = r_->Unpin(it->first);
  ASSERT_TRUE(s.ok()) << s.ToString();
  pins_.erase(it);
}

void ModelRun::OpView() {
  if (!views_.empty() && (views_.size() >= 3 || Chance(0.4))) {
    views_.erase(views_.begin() + static_cast<long>(Rand(views_.size())));
    return;
  }
  const uint64_t p = RandomValidPoint();
  auto v = r_->OpenView(p);
  ASSERT_TRUE(v.ok()) << "view at " << p << ": " << v.status().ToString();
  views_.push_back({p, *v});
}

void ModelRun::OpCreateOverlay() {
  if (!overlays_.empty() && Chance(0.2)) {
    auto o = r_->CreateOverlay(overlays_.begin()->first, last());
    ASSERT_EQ(o.status().code(), Code::kAlreadyExists) << o.status().ToString();
    return;
  }
  if (overlays_.size() >= 2) return;
  const std::string name = "ov-" + std::to_string(++overlay_counter_);
  const uint64_t p = RandomValidPoint();
  auto o = r_->CreateOverlay(name, p);
  ASSERT_TRUE(o.ok()) << "overlay at " << p << ": " << o.status().ToString();
  OverlayModel m;
  m.point = p;
  m.now = hist_->Read(p, 0, size_);
  m.flushed = m.now;
  m.handle = *o;
  overlays_[name] = std::move(m);
}

void ModelRun::ModelOverlayWrite(OverlayModel& m, uint64_t off, std::string_view data, bool fua) {
  m.now.replace(off, data.size(), data);
  for (uint64_t b = off / bs_; b * bs_ < off + data.size(); ++b) {
    m.dirty.insert(b);
    m.changed.insert(b);
  }
  if (fua) ModelOverlayFlush(m);
}

void ModelRun::ModelOverlayFlush(OverlayModel& m) {
  m.flushed = m.now;
  m.dirty.clear();
  m.changed_flushed = m.changed;
  m.flush_failed = false;
}

// The blocks' contents are unknown to the model (a failed write, a crash): take them from
// the overlay.
void ModelRun::AdoptOverlayBlocks(OverlayModel& m, const std::set<uint64_t>& blocks) {
  std::string buf(bs_, '\0');
  for (uint64_t b : blocks) {
    Status s = m.handle->Read(b * bs_, bs_, buf.data());
    ASSERT_TRUE(s.ok()) << s.ToString();
    m.now.replace(b * bs_, bs_, buf);
  }
}

void ModelRun::OpOverlayWrite() {
  if (overlays_.empty()) return;
  auto& [name, m] = *std::next(overlays_.begin(), static_cast<long>(Rand(overlays_.size())));
  uint64_t off, n;
  if (Chance(0.4)) {
    n = bs_ * (1 + Rand(4));
    off = bs_ * Rand(size_ / bs_);
  } else {
    n = 1 + Rand(3 * bs_);
    off = Rand(size_);
  }
  n = std::min(n, size_ - off);
  const std::string data = RandomBytes(n);
  const bool fua = Chance(0.1);
  Status s = m.handle->Write(off, data, fua);
  Log("  ", name, " write ", off, "+", n, fua ? " fua: " : ": ", s.ToString());
  ASSERT_TRUE(s.ok()) << name << " write " << off << "+" << n << ": " << s.ToString();
  ModelOverlayWrite(m, off, data, fua);
  if (Chance(0.05)) {
    s = m.handle->Write(size_ - 1, "xy");
    ASSERT_EQ(s.code(), Code::kOutOfRange) << s.ToString();
  }
}

void ModelRun::OpOverlayZero() {
  if (overlays_.empty()) return;
  auto& [name, m] = *std::next(overlays_.begin(), static_cast<long>(Rand(overlays_.size())));
  const uint64_t off = Chance(0.5) ? bs_ * Rand(size_ / bs_) : Rand(size_);
  const uint64_t n =
      std::min<uint64_t>(size_ - off, Chance(0.2) ? Rand(size_) + 1 : 1 + Rand(5 * bs_));
  const bool fua = Chance(0.1);
  Status s = Chance(0.5) ? m.handle->WriteZeroes(off, n, fua, /*no_hole=*/Chance(0.5)) : m.handle->Trim(off, n, fua);
  ASSERT_TRUE(s.ok()) << name << " zero " << off << "+" << n << ": " << s.ToString();
  ModelOverlayWrite(m, off, std::string(n, '\0'), fua);
}

void ModelRun::OpOverlayFlush() {
  if (overlays_.empty()) return;
  auto& [name, m] = *std::next(overlays_.begin(), static_cast<long>(Rand(overlays_.size())));
  Status s = m.handle->Flush();
  ASSERT_TRUE(s.ok()) << name << ": " << s.ToString();
  ModelOverlayFlush(m);
}

void ModelRun::OpDiscardOverlay() {
  if (overlays_.empty()) {
    ASSERT_EQ(r_->DiscardOverlay("none").code(), Code::kNotFound);
    return;
  }
  auto it = std::next(overlays_.begin(), static_cast<long>(Rand(overlays_.size())));
  std::shared_ptr<Overlay> handle = it->second.handle;
  Status s = r_->DiscardOverlay(it->first);
  ASSERT_TRUE(s.ok()) << it->first << ": " << s.ToString();
  overlays_.erase(it);
  // A handle kept by a user refuses to work from now on.
  char c;
  ASSERT_EQ(handle->Read(0, 1, &c).code(), Code::kFailedPrecondition);
  ASSERT_EQ(handle->Write(0, "x").code(), Code::kFailedPrecondition);
  ASSERT_EQ(handle->Flush().code(), Code::kFailedPrecondition);
}

// Commits the only overlay, writing to it while the commit runs; ends the run.
void ModelRun::OpCommit() {
  if (overlays_.size() != 1) {
    if (overlays_.size() > 1) {
      Status s = r_->StartCommit(overlays_.begin()->first);
      ASSERT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
    }
    return;
  }
  auto& [name, m] = *overlays_.begin();
  ASSERT_EQ(r_->StartCommit("nonexistent").code(), Code::kNotFound);
  if (Chance(0.3)) {
    RUN_STEP(InterruptCommit(name, m));
  } else {
    Status s = r_->StartCommit(name);
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (int i = 0, n = static_cast<int>(Rand(6)); i < n; ++i) RUN_STEP(OpOverlayWrite());
    s = r_->WaitForCommit();
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(r_->committed());
    // The old journal and base are removed in the background; a crash must not race it here.
    s = r_->WaitForCommitCleanup();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  ASSERT_TRUE(r_->committed());
  // Writes made while the commit ran may or may not be covered by its final flush.
  const std::set<uint64_t> raced = m.dirty;
  CommitProgress progress = r_->GetCommitProgress();
  if (!progress.overlay.empty()) {  // the commit ran in this process (not finished by Open)
    ASSERT_EQ(progress.overlay, name);
    ASSERT_TRUE(progress.done);
    ASSERT_EQ(progress.blocks_done, progress.blocks_total);
  }
  ASSERT_EQ(m.handle->state(), OverlayState::kCommitted);
  ASSERT_EQ(m.handle->present_blocks(), size_ / bs_);
  RUN_STEP(CheckOverlay(name, m, 8, true));

  // Everything else is gone.
  ASSERT_EQ(r_->OpenView(last()).status().code(), Code::kFailedPrecondition);
  ASSERT_EQ(r_->ResolvePoint(PointSpec{}).status().code(), Code::kFailedPrecondition);
  ASSERT_EQ(r_->Append(Record::Write(0, std::string(bs_, 'c'))).status().code(),
            Code::kFailedPrecondition);
  ASSERT_EQ(r_->CreateOverlay("after", last()).status().code(), Code::kFailedPrecondition);
  ASSERT_EQ(r_->ApplyRetention(RetentionPolicy{}).status().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(r_->Pins().empty());
  for (auto& [seq, v] : views_) {
    char c;
    ASSERT_EQ(v->Read(0, 1, &c).code(), Code::kFailedPrecondition);
  }

  // The committed disk survives a reopen or a crash (up to its last flush).
  for (int i = 0, n = static_cast<int>(Rand(4)); i < n; ++i) RUN_STEP(OpOverlayWrite());
  const uint64_t how = Rand(3);
  if (how == 0) {
    DropHandles();
  } else {
    if (Chance(0.5)) {
      ASSERT_TRUE(m.handle->Flush().ok());
      ModelOverlayFlush(m);
    }
    how == 1 ? env_.CrashDropAll() : env_.Crash(rng_());
    DropHandles();
  }
  auto r = Replica::Open(kDir, Options());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  r_ = std::move(r).value();
  ASSERT_TRUE(r_->committed());
  auto o = r_->GetOverlay(name);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  m.handle = *o;
  ASSERT_EQ(m.handle->state(), OverlayState::kCommitted);
  if (how != 0) {
    m.now = m.flushed;
    RUN_STEP(AdoptOverlayBlocks(m, how == 2 ? m.dirty : raced));
  }
  ASSERT_EQ(m.handle->present_blocks(), size_ / bs_);
  RUN_STEP(CheckOverlay(name, m, 8, true));
  ASSERT_EQ(r_->OpenView(0).status().code(), Code::kFailedPrecondition);
  RUN_STEP(CheckNothingLeftButTheOverlay());
  ended_by_commit_ = true;
}

// A commit stopped part way by an I/O error is finished by retrying it, or by reopening the
// replica, cleanly or after a power loss (Open resumes a commit that had begun).
void ModelRun::InterruptCommit(const std::string& name, OverlayModel& m) {
  env_.FailAfter(static_cast<int64_t>(Rand(30)));
  Status s = r_->StartCommit(name);
  if (s.ok()) s = r_->WaitForCommitCleanup();
  env_.FailAfter(-1);
  Log("  interrupted commit: ", s.ToString());
  if (s.ok()) return;
  ASSERT_EQ(s.code(), Code::kIoError) << s.ToString();
  if (r_->committed()) {
    // Stopped after it took effect, while dropping the journal and base: done all the same.
    ASSERT_TRUE(r_->GetCommitProgress().done);
    ASSERT_NE(s.message().find("is committed"), std::string_view::npos) << s.ToString();
    return;
  }
  const uint64_t how = Rand(4);
  if (how == 0) {
    s = r_->StartCommit(name);
    ASSERT_TRUE(s.ok()) << "retried commit: " << s.ToString();
    s = r_->WaitForCommitCleanup();
    ASSERT_TRUE(s.ok()) << "retried commit: " << s.ToString();
    return;
  }
  const Close close = static_cast<Close>(how - 1);
  if (close == Close::kCrashDropAll) env_.CrashDropAll();
  if (close == Close::kCrash) env_.Crash(rng_());
  DropHandles();
  auto r = Replica::Open(kDir, Options());
  ASSERT_TRUE(r.ok()) << "reopen during a commit: " << r.status().ToString();
  r_ = std::move(r).value();
  auto o = r_->GetOverlay(name);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  m.handle = *o;
  if (close != Close::kClean) {
    // Unflushed user writes may have been flushed by the commit before it stopped.
    m.now = m.flushed;
    RUN_STEP(AdoptOverlayBlocks(m, m.dirty));
  }
  ModelOverlayFlush(m);
  // Open resumes, in the background, a commit that had durably begun.
  if (!r_->GetCommitProgress().overlay.empty()) {
    s = r_->WaitForCommitCleanup();
    ASSERT_TRUE(s.ok()) << "resumed commit: " << s.ToString();
  }
  if (r_->committed()) {
    RUN_STEP(CheckNothingLeftButTheOverlay());
    return;
  }
  // The commit never durably began: it is the caller's to start again.
  ASSERT_EQ(m.handle->state(), OverlayState::kActive);
  ASSERT_TRUE(r_->StartCommit(name).ok());
  s = r_->WaitForCommitCleanup();
  ASSERT_TRUE(s.ok()) << "restarted commit: " << s.ToString();
}

// One operation with an I/O error injected after a random number of mutating calls; the
// failure must be clean: nothing acknowledged is lost, the replica reopens.
void ModelRun::OpFault() {
  const int64_t after = static_cast<int64_t>(Rand(12));
  const uint64_t kind = Rand(overlays_.empty() ? 5 : 8);
  bool ok = true;
  op_ = "fault kind " + std::to_string(kind) + " after " + std::to_string(after);
  env_.FailAfter(after);
  switch (kind) {
    case 0:
    case 1: {  // append
      std::vector<Record> batch;
      for (size_t i = 0, n = 1 + Rand(3); i < n; ++i) {
        batch.push_back(Chance(0.8) ? RandomDataRecord() : RandomMarker());
      }
      int64_t floor = hist_->last_timestamp();
      std::vector<Record> expect = batch;
      for (size_t i = 0; i < expect.size(); ++i) {
        expect[i].seq = last() + 1 + i;
        expect[i].timestamp_ns = static_cast<int64_t>(NextTimestamp(0, &floor));
      }
      auto res = r_->Append(std::span<Record>(batch));
      env_.FailAfter(-1);
      if (res.ok()) {
        ASSERT_EQ(*res, last() + batch.size());
        for (const Record& e : expect) {
          RUN_STEP(hist_->Apply(e));
          if (e.type == RecordType::kMarker) markers_[e.seq] = {e.marker, e.timestamp_ns};
        }
      } else {
        ok = false;
        ASSERT_EQ(res.status().code(), Code::kIoError) << res.status().ToString();
        uncertain_records_ = expect;
        sticky_error_ = true;
        // The journal's tail is uncertain: appends stop until the replica is reopened.
        auto again = r_->Append(Record::Write(0, std::string(bs_, 'z')));
        ASSERT_EQ(again.status().code(), Code::kIoError) << again.status().ToString();
        Health h = r_->GetHealth();
        ASSERT_EQ(h.level, Health::Level::kCritical);
        ASSERT_FALSE(h.problems.empty());
        ASSERT_NE(h.problems.back().find("reopen"), std::string::npos) << h.problems.back();
      }
      break;
    }
    case 2: {  // retention
      env_.FailAfter(-1);
      // (bounds first, as OpRetention does, then the call under the fault)
      RetentionPolicy policy;
      policy.window_ns = static_cast<int64_t>(1 + Rand(4)) * kNanosPerHour;
      policy.any_point_ns = static_cast<int64_t>(10 + Rand(40)) * kMinute;
      policy.tiers = {{policy.any_point_ns, 10 * kMinute}, {2 * kNanosPerHour, kNanosPerHour}};
      const int64_t now = clock_.NowNanos();
      RetentionAttempt a{now, policy, ProtectedPoints()};
      attempts_.push_back(a);
      uint64_t protect = a.protected_points.empty() ? UINT64_MAX : *a.protected_points.begin();
      oldest_bound_ =
          std::max(oldest_bound_, std::min(hist_->SeqAtTime(now - policy.window_ns - 1), protect));
      uint64_t thin = hist_->SeqAtTime(now - policy.any_point_ns - 1);
      apf_bound_ = std::max({apf_bound_, thin == 0 ? 0 : thin + 1, oldest_bound_});
      env_.FailAfter(after);
      auto rep = r_->ApplyRetention(policy);
      env_.FailAfter(-1);
      if (!rep.ok()) {
        ok = false;
        ASSERT_EQ(rep.status().code(), Code::kIoError) << rep.status().ToString();
      }
      break;
    }
    case 3: {  // pin
      const std::string owner = "user-" + std::to_string(Rand(3));
      const uint64_t p = RandomValidPoint();
      auto before = r_->Pins();
      Status s = r_->Pin(p, owner, "fault");
      env_.FailAfter(-1);
      if (s.ok()) {
        pins_[owner] = p;
      } else {
        ok = false;
        ASSERT_EQ(s.code(), Code::kIoError) << s.ToString();
        ASSERT_EQ(r_->Pins().size(), before.size());
        maybe_pins_[owner] = p;
      }
      break;
    }
    case 4: {  // create an overlay
      if (overlays_.size() >= 2) {
        env_.FailAfter(-1);
        break;
      }
      const std::string name = "ov-" + std::to_string(++overlay_counter_);
      const uint64_t p = RandomValidPoint();
      auto o = r_->CreateOverlay(name, p);
      env_.FailAfter(-1);
      if (o.ok()) {
        OverlayModel m;
        m.point = p;
        m.now = hist_->Read(p, 0, size_);
        m.flushed = m.now;
        m.handle = *o;
        overlays_[name] = std::move(m);
      } else {
        ok = false;
        ASSERT_EQ(o.status().code(), Code::kIoError) << o.status().ToString();
        maybe_overlays_[name] = p;
      }
      break;
    }
    case 5:
    case 6: {  // overlay write, then flush
      auto& [name, m] = *std::next(overlays_.begin(), static_cast<long>(Rand(overlays_.size())));
      const uint64_t off = Rand(size_);
      const uint64_t n = std::min<uint64_t>(size_ - off, 1 + Rand(3 * bs_));
      const std::string data = RandomBytes(n);
      Status s = m.handle->Write(off, data);
      Log("  ", name, " write ", off, "+", n, ": ", s.ToString());
      if (s.ok()) {
        ModelOverlayWrite(m, off, data, false);
        s = m.handle->Flush();
        Log("  ", name, " flush: ", s.ToString());
        env_.FailAfter(-1);
        if (s.ok()) {
          ModelOverlayFlush(m);
        } else {
          ASSERT_EQ(s.code(), Code::kIoError) << s.ToString();
          m.flush_failed = true;
        }
      } else {
        env_.FailAfter(-1);
        ASSERT_EQ(s.code(), Code::kIoError) << s.ToString();
        // The failed write's blocks hold old or new data, like a disk's.
        std::set<uint64_t> blocks;
        for (uint64_t b = off / bs_; b * bs_ < off + n; ++b) blocks.insert(b);
        RUN_STEP(AdoptOverlayBlocks(m, blocks));
        std::set<uint64_t> changed;
        for (const BlockExtent& e : m.handle->ChangedExtents()) {
          for (uint64_t b = e.first_block; b < e.first_block + e.count; ++b) changed.insert(b);
        }
        for (uint64_t b : blocks) {
          m.dirty.insert(b);
          if (changed.count(b)) m.changed.insert(b);  // whether the write got that far
        }
      }
      // Keep using it: a later flush covers everything written so far.
      if (Chance(0.7)) {
        s = m.handle->Flush();
        ASSERT_TRUE(s.ok()) << s.ToString();
        ModelOverlayFlush(m);
      }
      break;
    }
    default: {  // discard an overlay
      auto it = std::next(overlays_.begin(), static_cast<long>(Rand(overlays_.size())));
      const std::string name = it->first;
      Status s = r_->DiscardOverlay(name);
      env_.FailAfter(-1);
      Log("  discard ", name, " (point ", it->second.point, "): ", s.ToString());
      if (s.ok()) {
        overlays_.erase(it);
      } else {
        ok = false;
        ASSERT_EQ(s.code(), Code::kIoError) << s.ToString();
        if (Chance(0.5)) {
          // Retrying finishes the discard, durably.
          s = r_->DiscardOverlay(name);
          ASSERT_TRUE(s.ok()) << "retried discard: " << s.ToString();
          overlays_.erase(it);
        } else {
          maybe_discarded_.insert(name);
        }
      }
      break;
    }
  }
  env_.FailAfter(-1);
  if (::testing::Test::HasFatalFailure()) return;
  op_ += ok ? " ok" : " failed";
  if (!ok || sticky_error_ || Chance(0.3)) {
    const Close how = static_cast<Close>(Rand(3));
    op_ += " reopen " + std::to_string(static_cast<int>(how));
    RUN_STEP(Reopen(how));
  } else {
    RUN_STEP(CheckFull());
  }
}

void ModelRun::Step() {
  const uint64_t pick = Rand(1000);
  if (pick < 300) {
    op_ = "append";
    OpAppend();
  } else if (pick < 340) {
    op_ = "invalid-append";
    OpInvalidAppend();
  } else if (pick < 440) {
    op_ = "marker";
    DoAppend({RandomMarker()});
  } else if (pick < 560) {
    op_ = "clock";
    OpClock();
  } else if (pick < 610) {
    op_ = "retention";
    OpRetention();
  } else if (pick < 640) {
    op_ = "pin";
    OpPin();
  } else if (pick < 660) {
    op_ = "unpin";
    OpUnpin();
  } else if (pick < 690) {
    op_ = "view";
    OpView();
  } else if (pick < 715) {
    op_ = "create-overlay";
    OpCreateOverlay();
  } else if (pick < 790) {
    op_ = "overlay-write";
    OpOverlayWrite();
  } else if (pick < 815) {
    op_ = "overlay-zero";
    OpOverlayZero();
  } else if (pick < 845) {
    op_ = "overlay-flush";
    OpOverlayFlush();
  } else if (pick < 860) {
    op_ = "discard-overlay";
    OpDiscardOverlay();
  } else if (pick < 868) {
    op_ = "commit";
    OpCommit();
  } else if (pick < 900) {
    op_ = "reopen";
    Reopen(Close::kClean);
  } else if (pick < 935) {
    op_ = "crash";
    Reopen(Chance(0.3) ? Close::kCrashDropAll : Close::kCrash);
  } else if (pick < 975) {
    OpFault();
  } else {
    op_ = "check";
    CheckFull();
  }
}

void ModelRun::Run() {
  RUN_STEP(Create());
  const int steps = 120 + static_cast<int>(Rand(120));
  for (step_ = 1; step_ <= steps && !ended_by_commit_; ++step_) {
    SCOPED_TRACE("step " + std::to_string(step_));
    RUN_STEP(Step());
    const ReplicaStats st = r_->Stats();
    Log("step ", step_, " ", op_, ": last ", last(), " oldest ", st.oldest_point,
        " any_point_from ", st.any_point_from, " markers ", markers_.size(), " overlays ",
        overlays_.size());
    if (ended_by_commit_) break;
    RUN_STEP(step_ % 8 == 0 ? CheckFull() : CheckLight());
  }
  if (!ended_by_commit_) RUN_STEP(CheckFull());
}

// --- checks -----------------------------------------------------------------------------

void ModelRun::CheckStats() {
  const ReplicaStats st = r_->Stats();
  ASSERT_EQ(st.last_seq, last());
  ASSERT_GE(st.oldest_point, oldest_seen_) << "the oldest point moved back";
  ASSERT_LE(st.oldest_point, oldest_bound_) << "history merged that no retention call allowed";
  ASSERT_GE(st.any_point_from, apf_seen_) << "any_point_from moved back";
  ASSERT_LE(st.any_point_from, apf_bound_) << "history thinned that no retention call allowed";
  oldest_seen_ = st.oldest_point;
  apf_seen_ = st.any_point_from;
  if (!sticky_error_) {
    Health h = r_->GetHealth();
    ASSERT_EQ(h.level, Health::Level::kHealthy) << (h.problems.empty() ? "" : h.problems[0]);
  }
}

void ModelRun::CheckMarkerRemovalLegit(uint64_t seq, const MarkerModel& m) {
  ASSERT_LT(seq, apf_seen_) << "marker " << seq << " removed above any_point_from";
  ASSERT_FALSE(IsProtected(seq)) << "protected marker " << seq << " removed";
  bool allowed = false;
  for (const RetentionAttempt& a : attempts_) {
    if (a.now - m.ts >= a.policy.any_point_ns && !a.protected_points.count(seq)) allowed = true;
  }
  ASSERT_TRUE(allowed) << "marker " << seq << " removed though no retention call found it old";
}

// Lists every marker through ListPoints pages and compares with the model; markers the
// replica dropped must have been droppable (they go to *removed).
void ModelRun::CheckMarkers(Removed* removed) {
  const ReplicaStats st = r_->Stats();
  std::vector<PointInfo> listed;
  PointFilter f;
  f.limit = 1 + Rand(7);
  for (int pages = 0;; ++pages) {
    auto page = r_->ListPoints(f);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    for (const PointInfo& p : page->points) listed.push_back(p);
    ASSERT_LE(page->points.size(), f.limit);
    if (page->next_token == 0) break;
    ASSERT_EQ(page->points.size(), f.limit);
    f.before_seq = page->next_token;
    ASSERT_LT(pages, 100000);
  }
  std::set<uint64_t> have;
  for (size_t i = 0; i < listed.size(); ++i) {
    const PointInfo& p = listed[i];
    ASSERT_TRUE(p.is_marker);
    if (i > 0) {
      ASSERT_LT(p.seq, listed[i - 1].seq) << "points not newest first";
    }
    ASSERT_GT(p.seq, st.oldest_point);
    auto m = markers_.find(p.seq);
    ASSERT_TRUE(m != markers_.end()) << "listed point " << p.seq << " is no marker of the model";
    ASSERT_EQ(p.timestamp_ns, m->second.ts) << p.seq;
    ASSERT_EQ(p.marker.kind, m->second.info.kind) << p.seq;
    ASSERT_EQ(p.marker.label, m->second.info.label) << p.seq;
    ASSERT_EQ(p.marker.marker_id, m->second.info.marker_id) << p.seq;
    ASSERT_EQ(p.marker.group_id, m->second.info.group_id) << p.seq;
    have.insert(p.seq);
  }
  for (auto it = markers_.begin(); it != markers_.end();) {
    if (it->first <= st.oldest_point) {  // merged into the base
      it = markers_.erase(it);
      continue;
    }
    if (!have.count(it->first)) {
      RUN_STEP(CheckMarkerRemovalLegit(it->first, it->second));
      if (removed) removed->push_back(*it);
      it = markers_.erase(it);
      continue;
    }
    ++it;
  }
  ASSERT_EQ(st.markers, markers_.size());

  // A filtered listing: one kind, a time window.
  PointFilter g;
  if (Chance(0.5)) g.kind = static_cast<MarkerKind>(1 + Rand(3));
  const int64_t now = clock_.NowNanos();
  g.from_ns = now - static_cast<int64_t>(Rand(6 * 60)) * kMinute;
  g.to_ns = g.from_ns + static_cast<int64_t>(Rand(4 * 60)) * kMinute;
  g.limit = 1000;
  auto page = r_->ListPoints(g);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  std::vector<uint64_t> want, got;
  for (auto it = markers_.rbegin(); it != markers_.rend(); ++it) {
    if (g.kind && it->second.info.kind != *g.kind) continue;
    if (it->second.ts < g.from_ns || it->second.ts > g.to_ns) continue;
    want.push_back(it->first);
  }
  for (const PointInfo& p : page->points) got.push_back(p.seq);
  ASSERT_EQ(got, want) << "filtered ListPoints";
  PointFilter empty;
  empty.limit = 0;
  ASSERT_EQ(r_->ListPoints(empty).status().code(), Code::kInvalidArgument);
}

// Thinning keeps, in every tier bucket, the marker that ranks highest (app > group > crash,
// then the newest): each marker it removed must have a survivor in its bucket that ranks
// at least as high.
void ModelRun::CheckBucketWinners(const RetentionAttempt& a, const Removed& removed) {
  const uint64_t apf = r_->Stats().any_point_from;
  auto tier_bucket = [&](int64_t ts, size_t* tier, int64_t* bucket) {
    const int64_t age = a.now - ts;
    bool found = false;
    for (size_t i = 0; i < a.policy.tiers.size(); ++i) {
      if (age >= a.policy.tiers[i].older_than_ns) {
        *tier = i;
        found = true;
      }
    }
    if (!found) return false;
    const int64_t bns = a.policy.tiers[*tier].bucket_ns;
    *bucket = ts >= 0 ? ts / bns : -((-ts + bns - 1) / bns);
    return true;
  };
  for (const auto& [seq, gone] : removed) {
    if (a.policy.keep_group_markers) {
      ASSERT_NE(gone.info.kind, MarkerKind::kGroupConsistent)
          << "group-consistent marker " << seq << " was thinned (decision 0013)";
    }
    size_t tier = 0;
    int64_t bucket = 0;
    ASSERT_TRUE(tier_bucket(gone.ts, &tier, &bucket))
        << "marker " << seq << ", younger than every tier, was removed";
    bool survivor = false;
    for (const auto& [s, m] : markers_) {
      if (s >= apf) break;
      size_t t = 0;
      int64_t b = 0;
      if (!tier_bucket(m.ts, &t, &b) || t != tier || b != bucket) continue;
      const int have = KindRank(m.info.kind), lost = KindRank(gone.info.kind);
      if (have > lost || (have == lost && s > seq)) survivor = true;
    }
    ASSERT_TRUE(survivor) << "marker " << seq << " removed, and no better one kept in its bucket";
  }
  // And at most one survives per bucket, apart from points retention must keep (pinned, and
  // group-consistent ones unless the policy thins them: decision 0013).
  std::map<std::pair<size_t, int64_t>, uint64_t> winner;
  for (const auto& [s, m] : markers_) {
    if (s >= apf) break;
    size_t t = 0;
    int64_t b = 0;
    if (a.protected_points.count(s) || !tier_bucket(m.ts, &t, &b)) continue;
    if (a.policy.keep_group_markers && m.info.kind == MarkerKind::kGroupConsistent) continue;
    auto [it, first] = winner.emplace(std::make_pair(t, b), s);
    ASSERT_TRUE(first) << "markers " << it->second << " and " << s << " both kept in bucket " << b
                       << " of tier " << t;
  }
}

void ModelRun::CheckPins() {
  std::map<std::string, uint64_t> want = pins_;
  for (const auto& [name, m] : overlays_) want["overlay:" + name] = m.point;
  std::map<std::string, uint64_t> got;
  for (const Pin& p : r_->Pins()) got[p.owner] = p.seq;
  ASSERT_EQ(got, want);
}

void ModelRun::CheckReads(const std::shared_ptr<View>& v, uint64_t p, int reads, bool full) {
  ASSERT_EQ(v->point(), p);
  ASSERT_EQ(v->size(), size_);
  ASSERT_EQ(v->block_size(), bs_);
  std::string buf;
  for (int i = 0; i < reads + (full ? 1 : 0); ++i) {
    uint64_t off, n;
    if (i == reads) {
      off = 0;
      n = size_;
    } else if (Chance(0.3)) {
      off = bs_ * Rand(size_ / bs_);
      n = std::min<uint64_t>(size_ - off, bs_ * (1 + Rand(8)));
    } else {
      off = Rand(size_);
      n = std::min<uint64_t>(size_ - off, Rand(4 * bs_) + 1);
    }
    buf.assign(n, '?');
    Status s = v->Read(off, n, buf.data());
    ASSERT_TRUE(s.ok()) << "read " << off << "+" << n << " at point " << p << ": " << s.ToString();
    if (buf != hist_->Read(p, off, n)) {
      const std::string want = hist_->Read(p, off, n);
      size_t at = 0;
      while (buf[at] == want[at]) ++at;
      const uint64_t block = (off + at) / bs_;
      std::string whole(bs_, '\0');
      Status rs = v->Read(block * bs_, bs_, whole.data());
      FAIL() << "point " << p << ": read " << off << "+" << n << " differs from the model at byte "
             << off + at << "; " << hist_->Explain(block, whole) << " (" << rs.ToString() << ")";
    }
  }
  char c;
  ASSERT_EQ(v->Read(size_, 1, &c).code(), Code::kOutOfRange);

  // Extents cover the range exactly; a run said to be zero reads as zeros.
  const uint64_t off = Rand(size_);
  const uint64_t n = 1 + Rand(std::min<uint64_t>(size_ - off, 64 * bs_));
  auto extents = v->Extents(off, n);
  ASSERT_TRUE(extents.ok()) << extents.status().ToString();
  uint64_t pos = off;
  for (const ViewExtent& x : *extents) {
    ASSERT_GT(x.length, 0u);
    ASSERT_LE(pos + x.length, off + n);
    if (x.zero || x.hole) {
      ASSERT_EQ(hist_->Read(p, pos, x.length), std::string(x.length, '\0'))
          << "point " << p << ": extent " << pos << "+" << x.length << " said to read as zeros";
    }
    pos += x.length;
  }
  ASSERT_EQ(pos, off + n) << "extents do not cover " << off << "+" << n;
}

// One point: accepted points read as the model; refused ones must be legitimately gone.
void ModelRun::CheckPoint(uint64_t p, int reads, bool full) {
  const ReplicaStats st = r_->Stats();
  auto v = r_->OpenView(p);
  auto rp = r_->ResolvePoint(SeqSpec(p));
  ASSERT_EQ(v.status().code(), rp.status().code()) << "OpenView and ResolvePoint disagree on " << p;
  const bool must_exist =
      p >= st.oldest_point && p <= last() &&
      (p >= st.any_point_from || p == st.oldest_point || markers_.count(p) || IsProtected(p));
  Log("  point ", p, ": ", v.status().ToString(), markers_.count(p) ? " (marker)" : "",
      IsProtected(p) ? " (protected)" : "");
  if (!v.ok()) {
    ASSERT_FALSE(must_exist) << "point " << p << " refused: " << v.status().ToString()
                             << " (oldest " << st.oldest_point << ", any_point_from "
                             << st.any_point_from << ", last " << last() << ")";
    if (p > last() || p < st.oldest_point) {
      ASSERT_EQ(v.status().code(), Code::kOutOfRange) << v.status().ToString();
    } else {
      ASSERT_EQ(v.status().code(), Code::kNotFound) << v.status().ToString();
    }
    return;
  }
  ASSERT_GE(p, st.oldest_point);
  ASSERT_LE(p, last());
  ASSERT_TRUE(must_exist) << "point " << p << " accepted though thinned";
  ASSERT_EQ(rp->seq, p);
  if (p > st.oldest_point) {
    ASSERT_EQ(rp->timestamp_ns, hist_->timestamp(p)) << "timestamp of " << p;
    ASSERT_EQ(rp->is_marker, markers_.count(p) > 0) << p;
  }
  CheckReads(*v, p, reads, full);
}

void ModelRun::CheckOverlay(const std::string& name, OverlayModel& m, int reads, bool full) {
  std::string buf;
  for (int i = 0; i < reads + (full ? 1 : 0); ++i) {
    uint64_t off, n;
    if (i == reads) {
      off = 0;
      n = size_;
    } else {
      off = Rand(size_);
      n = std::min<uint64_t>(size_ - off, Rand(4 * bs_) + 1);
    }
    buf.assign(n, '?');
    Status s = m.handle->Read(off, n, buf.data());
    ASSERT_TRUE(s.ok()) << "overlay " << name << " read " << off << "+" << n << ": "
                        << s.ToString();
    if (buf != m.now.substr(off, n)) {
      size_t at = 0;
      while (buf[at] == m.now[off + at]) ++at;
      const uint64_t block = (off + at) / bs_;
      std::string whole(bs_, '\0');
      Status rs = m.handle->Read(block * bs_, bs_, whole.data());
      const std::string at_point = hist_->Read(m.point, block * bs_, bs_);
      FAIL() << "overlay " << name << " (point " << m.point << "): read " << off << "+" << n
             << " differs from the model at byte " << off + at << " (block " << block
             << "); the block reads as " << (whole == at_point ? "the point's" : "other")
             << " data; the point's is "
             << (at_point == std::string(bs_, '\0') ? "zeros" : "not zeros") << "; model block "
             << (m.now.substr(block * bs_, bs_) == at_point ? "=" : "!=") << " point's"
             << "; first differing byte at " << at << ": got " << int(buf[at]) << " want "
             << int(m.now[off + at]) << " next bytes got " << int(buf[at + 1]) << ","
             << int(buf[at + 2]);
    }
  }
  if (full && m.handle->state() != OverlayState::kCommitted) {
    std::vector<BlockExtent> want;
    for (uint64_t b : m.changed) {
      if (!want.empty() && want.back().first_block + want.back().count == b) {
        ++want.back().count;
      } else {
        want.push_back({b, 1});
      }
    }
    ASSERT_EQ(m.handle->ChangedExtents(), want) << "overlay " << name;
    ASSERT_EQ(m.handle->changed_blocks(), m.changed.size());
  }
}

void ModelRun::CheckResolveSpecs() {
  const ReplicaStats st = r_->Stats();
  auto latest = r_->ResolvePoint(PointSpec{});
  ASSERT_TRUE(latest.ok()) << "latest: " << latest.status().ToString();
  ASSERT_EQ(latest->seq, last());

  for (int k = 1; k <= 3; ++k) {
    const PointSpec spec = KindSpec(static_cast<MarkerKind>(k));
    uint64_t want = 0;
    for (const auto& [seq, m] : markers_) {
      if (m.info.kind == spec.marker_kind) want = seq;
    }
    auto got = r_->ResolvePoint(spec);
    if (want == 0) {
      ASSERT_EQ(got.status().code(), Code::kNotFound) << spec.ToString();
    } else {
      ASSERT_TRUE(got.ok()) << spec.ToString() << ": " << got.status().ToString();
      ASSERT_EQ(got->seq, want) << spec.ToString();
      ASSERT_TRUE(got->is_marker);
    }
  }

  if (!markers_.empty()) {
    auto it = std::next(markers_.begin(), static_cast<long>(Rand(markers_.size())));
    const Id128 id = it->second.info.marker_id;
    uint64_t want = 0;
    for (const auto& [seq, m] : markers_) {
      if (m.info.marker_id == id) want = seq;
    }
    auto got = r_->ResolvePoint(IdSpec(id));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(got->seq, want);
  }
  Id128 absent{};
  absent[0] = 0xEE;
  absent[15] = 0x11;
  bool taken = false;
  for (const auto& [seq, m] : markers_) taken = taken || m.info.marker_id == absent;
  if (!taken) {
    auto got = r_->ResolvePoint(IdSpec(absent));
    ASSERT_EQ(got.status().code(), Code::kNotFound);
  }

  // A time T: the newest record at or before T; in thinned history the newest marker.
  for (int i = 0; i < 3; ++i) {
    const int64_t now = clock_.NowNanos();
    const int64_t t = now - static_cast<int64_t>(Rand(10 * 60 * 60)) * kNanosPerSecond;
    uint64_t s = hist_->SeqAtTime(t);
    auto got = r_->ResolvePoint(TimeSpec(t));
    if (s < st.oldest_point || (s == 0 && st.oldest_point == 0)) {
      ASSERT_EQ(got.status().code(), Code::kOutOfRange) << FormatTime(t);
      continue;
    }
    uint64_t want = s;
    if (s < st.any_point_from && !markers_.count(s)) {
      auto m = markers_.upper_bound(s);
      want = m == markers_.begin() ? st.oldest_point : std::prev(m)->first;
    }
    if (want == st.oldest_point) {
      // The format keeps no timestamp for the base, and compaction drops the thinned records
      // before the first kept one: the replica cannot tell this time from one before the
      // oldest point, so either answer is consistent with what it stores.
      if (got.ok()) {
        ASSERT_EQ(got->seq, st.oldest_point) << FormatTime(t);
      } else {
        ASSERT_EQ(got.status().code(), Code::kOutOfRange) << FormatTime(t);
      }
      continue;
    }
    ASSERT_TRUE(got.ok()) << FormatTime(t) << ": " << got.status().ToString();
    ASSERT_EQ(got->seq, want) << FormatTime(t);
  }
}

// A committed replica, once opened, keeps nothing of its journal and base.
void ModelRun::CheckNothingLeftButTheOverlay() {
  auto names = env_.ListDir(std::string(kDir) + "/journal");
  if (names.ok()) {
    ASSERT_TRUE(names->empty()) << names->size() << " files left in the journal, e.g. "
                                << (*names)[0];
  } else {
    ASSERT_EQ(names.status().code(), Code::kNotFound) << names.status().ToString();
  }
  ASSERT_FALSE(env_.Exists(std::string(kDir) + "/base.img"));
}

void ModelRun::CheckLight() {
  RUN_STEP(CheckStats());
  RUN_STEP(CheckPoint(last(), 2, false));
  const ReplicaStats st = r_->Stats();
  const uint64_t lo = std::max(st.oldest_point, st.any_point_from);
  if (lo <= last()) RUN_STEP(CheckPoint(lo + Rand(last() - lo + 1), 1, false));
  for (auto& [name, m] : overlays_) RUN_STEP(CheckOverlay(name, m, 2, false));
  for (auto& [p, v] : views_) RUN_STEP(CheckReads(v, p, 1, false));
}

void ModelRun::CheckFull() {
  RUN_STEP(CheckStats());
  RUN_STEP(CheckMarkers());
  RUN_STEP(CheckPins());
  RUN_STEP(CheckResolveSpecs());
  const ReplicaStats st = r_->Stats();
  std::set<uint64_t> points = {last(), st.oldest_point, last() + 1 + Rand(3)};
  if (st.oldest_point > 0) points.insert(Rand(st.oldest_point));
  for (const auto& [seq, m] : markers_) points.insert(seq);
  for (uint64_t p : ProtectedPoints()) points.insert(p);
  if (last() > st.oldest_point) {
    for (int i = 0; i < 8; ++i) points.insert(st.oldest_point + Rand(last() - st.oldest_point + 1));
  }
  for (uint64_t p : points) RUN_STEP(CheckPoint(p, 2, Chance(0.1)));
  for (auto& [name, m] : overlays_) RUN_STEP(CheckOverlay(name, m, 4, true));
  for (auto& [p, v] : views_) RUN_STEP(CheckReads(v, p, 2, Chance(0.2)));
}

// Names the running seed where gtest cannot: a crash or a sanitizer's abort (a signal
// handler and the sanitizers' death callback write a note formatted before the seed ran),
// and a hang (a watchdog writes when one seed runs past kSlow: ctest's timeout kills with no
// chance to print). Silent for seeds that pass in time.
class SeedWatch {
 public:
  static constexpr auto kSlow = std::chrono::seconds(60);

  SeedWatch() {
    for (size_t i = 0; i < kSignals.size(); ++i) {
      struct sigaction sa = {};
      sa.sa_sigaction = OnFatalSignal;
      sa.sa_flags = SA_SIGINFO;
      sigemptyset(&sa.sa_mask);
      sigaction(kSignals[i], &sa, &old_actions_[i]);
    }
    if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback(WriteNote);
    watchdog_ = std::thread([this] { Watch(); });
  }

  ~SeedWatch() {
    {
      std::lock_guard l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    watchdog_.join();
    note_len_.store(0);
    if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback(nullptr);
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &old_actions_[i], nullptr);
  }

  void Start(uint64_t seed) {
    std::lock_guard l(mu_);
    seed_ = seed;
    started_ = std::chrono::steady_clock::now();
    warned_ = false;
    const int n = std::snprintf(note_, sizeof note_,
                                "\n[ model    ] died in seed %llu; replay: "
                                "FERRY_MODEL_SEED_START=%llu FERRY_MODEL_SEEDS=1\n",
                                static_cast<unsigned long long>(seed),
                                static_cast<unsigned long long>(seed));
    note_len_.store(static_cast<size_t>(std::max(n, 0)));
  }

 private:
  static constexpr std::array<int, 5> kSignals = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

  static void WriteNote() {
    const size_t n = note_len_.load();
    if (n != 0) (void)!write(STDERR_FILENO, note_, n);
  }

  // Writes the note and puts back the handler that was there (a sanitizer's, or the
  // default), which then reports as it would have: a fault happens again when this returns;
  // a signal that was sent (abort(), kill) is sent again.
  static void OnFatalSignal(int sig, siginfo_t* info, void*) {
    WriteNote();
    for (size_t i = 0; i < kSignals.size(); ++i) {
      if (kSignals[i] == sig) sigaction(sig, &old_actions_[i], nullptr);
    }
    if (info == nullptr || info->si_code <= 0) raise(sig);
  }

  void Watch() {
    std::unique_lock l(mu_);
    while (!stop_) {
      cv_.wait_for(l, std::chrono::seconds(5));
      if (!stop_ && !warned_ && std::chrono::steady_clock::now() - started_ > kSlow) {
        std::fprintf(stderr, "[ model    ] seed %llu has run for over %lld s; replay: "
                     "FERRY_MODEL_SEED_START=%llu FERRY_MODEL_SEEDS=1\n",
                     static_cast<unsigned long long>(seed_), static_cast<long long>(kSlow.count()),
                     static_cast<unsigned long long>(seed_));
        warned_ = true;
      }
    }
  }

  static inline char note_[160];
  static inline std::atomic<size_t> note_len_{0};
  static inline std::array<struct sigaction, kSignals.size()> old_actions_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t seed_ = 0;
  std::chrono::steady_clock::time_point started_;
  bool warned_ = false;
  std::thread watchdog_;
};

TEST(JournalModelTest, RandomHistoriesMatchTheModel) {
  const uint64_t seeds = EnvU64("FERRY_MODEL_SEEDS", 200);
  const uint64_t start = EnvU64("FERRY_MODEL_SEED_START", 1);
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t commits = 0;
  SeedWatch watch;
  for (uint64_t seed = start; seed < start + seeds; ++seed) {
    watch.Start(seed);
    ModelRun run(seed);
    {
      SCOPED_TRACE("replay: FERRY_MODEL_SEED_START=" + std::to_string(seed) +
                   " FERRY_MODEL_SEEDS=1");
      run.Run();
    }
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "seed " << seed << " failed at step " << run.step() << " (" << run.last_op()
                    << ")";
      return;
    }
    commits += run.committed_end();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ model    ] %llu seeds from %llu (%llu ended in a commit) in %.1f s\n",
              static_cast<unsigned long long>(seeds), static_cast<unsigned long long>(start),
              static_cast<unsigned long long>(commits), secs);
}

}  // namespace
}  // namespace ferry::journal
