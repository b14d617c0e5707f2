// Background maintenance throughput: retention merging journal into the base, and commit
// consolidating an overlay into a plain image. bench/run-journal-bench compares both with
// fio's sequential write bandwidth on the same filesystem.
//
//   merge64k_mibps  ApplyRetention merging FERRY_BENCH_MERGE_BYTES (512 MiB; quick 32 MiB) of
//                   64 KiB writes at random offsets of a FERRY_BENCH_MERGE_VOLUME_MIB (2048;
//                   quick 128) volume into its base, which is full (as after an initial
//                   sync): journal payload bytes consumed per second
//   merge4k_mibps   then the same with 4 KiB writes (the worst case: one run per block)
//   commit_mibps    StartCommit + WaitForCommit of an overlay at the newest point of a
//                   FERRY_BENCH_COMMIT_VOLUME_MIB (1024; quick 64) volume (a full base plus
//                   4..64 KiB overwrites adding up to 10% of it, see BuildImageReplica),
//                   after the overlay's user wrote 1% of it: volume bytes per second
//   merge1m_base_mibps  the merge that built that base (1 MiB records); information only
// The journal was just written with direct appends (docs/decisions/0014), so none of it is in
// the page cache, as for a merge at the end of a day's retention window: a merge reads the
// segments in journal order as it copies, a commit reads them front to back first.
// FERRY_BENCH_DIRECT=0 appends through the page cache instead, which then still holds the
// journal.
//
// Usage: journal_maintenance_bench --dir SCRATCH_DIR
#include "bench_util.h"
#include "journal/overlay.h"

namespace ferry::bench {
namespace {

// Appends `journal_bytes` of `record_bytes` writes at random aligned offsets, then merges the
// whole journal into the base and reports the journal payload bytes merged per second.
void RunMerge(journal::Replica& replica, ManualClock& clock, const std::string& name,
              uint64_t record_bytes, uint64_t journal_bytes) {
  const std::string pool = RandomBytes(8 << 20, 7);
  std::mt19937_64 rng(8);
  const uint64_t slots = replica.size() / record_bytes;
  const size_t per_call = std::max<size_t>(1, (4 << 20) / record_bytes);
  std::vector<journal::Record> batch;
  for (uint64_t done = 0; done < journal_bytes; done += record_bytes) {
    size_t at = static_cast<size_t>(rng() % (pool.size() / record_bytes)) * record_bytes;
    const uint64_t offset = (rng() % slots) * record_bytes;
    batch.push_back(journal::Record::Write(offset, pool.substr(at, record_bytes)));
    if (batch.size() == per_call) {
      AppendAll(replica, batch, per_call);
      batch.clear();
    }
  }
  if (!batch.empty()) AppendAll(replica, batch, per_call);
  const journal::ReplicaStats st = replica.Stats();

  clock.Advance(2 * journal::kNanosPerHour);
  journal::RetentionPolicy policy;
  policy.window_ns = journal::kNanosPerHour;
  policy.any_point_ns = journal::kNanosPerHour;
  const double t0 = Seconds();
  auto report = Must(replica.ApplyRetention(policy), "apply retention");
  const double elapsed = Seconds() - t0;
  if (report.records_merged != st.records) {
    Fail("apply retention", Internal("merged " + std::to_string(report.records_merged) + " of " +
                                     std::to_string(st.records) + " records"));
  }
  const double mib = MiB(static_cast<double>(journal_bytes));
  Log("%s: merged %" PRIu64 " records (%.0f MiB of payload) into the base in %.2f s = %.1f MiB/s",
      name.c_str(), report.records_merged, mib, elapsed, mib / elapsed);
  Emit(name + "_mibps", mib / elapsed);
}

void RunMerges(const std::string& scratch, uint64_t size, uint64_t journal_bytes) {
  ScratchDir dir(scratch, "merge");
  ManualClock clock;
  // A full base, as after an initial sync: merges overwrite allocated blocks in place.
  auto replica = BuildImageReplica(dir.Sub("replica"), size, 0, 4, &clock);
  RunMerge(*replica, clock, "merge64k", 64 << 10, journal_bytes);
  RunMerge(*replica, clock, "merge4k", 4 << 10, journal_bytes);
}

void RunCommit(const std::string& scratch, uint64_t size) {
  ScratchDir dir(scratch, "commit");
  ManualClock clock;
  double base_merge_s = 0;
  auto replica = BuildImageReplica(dir.Sub("replica"), size, 0.10, 64, &clock, &base_merge_s);
  Log("commit: base of %" PRIu64 " MiB in 1 MiB records merged in %.2f s (%.1f MiB/s)", size >> 20,
      base_merge_s, MiB(static_cast<double>(size)) / base_merge_s);
  Emit("merge1m_base_mibps", MiB(static_cast<double>(size)) / base_merge_s);

  const uint64_t last = replica->Stats().last_seq;
  auto overlay = Must(replica->CreateOverlay("bench", last), "create overlay");
  // The failed-over machine writes a little before the commit starts.
  const std::string data = RandomBytes(64 << 10, 9);
  std::mt19937_64 rng(10);
  for (uint64_t i = 0; i < size / 100 / data.size(); ++i) {
    Check(overlay->Write((rng() % (size / data.size())) * data.size(), data), "overlay write");
  }
  Check(overlay->Flush(), "overlay flush");

  const double t0 = Seconds();
  Check(replica->StartCommit("bench"), "start commit");
  Check(replica->WaitForCommit(), "commit");
  const double elapsed = Seconds() - t0;
  const double mib = MiB(static_cast<double>(size));
  Log("commit: consolidated a %.0f MiB volume in %.2f s = %.1f MiB/s", mib, elapsed, mib / elapsed);
  Emit("commit_mibps", mib / elapsed);
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) {
  using namespace ferry::bench;
  const std::string scratch = ScratchDirArg(argc, argv);
  RunMerges(scratch, EnvU64("FERRY_BENCH_MERGE_VOLUME_MIB", 2048, 128) << 20,
            EnvU64("FERRY_BENCH_MERGE_BYTES", 512ull << 20, 32ull << 20));
  RunCommit(scratch, EnvU64("FERRY_BENCH_COMMIT_VOLUME_MIB", 1024, 64) << 20);
  return 0;
}
