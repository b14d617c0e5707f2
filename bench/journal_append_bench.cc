// Durable append throughput of a replica (Replica::Append returns after fdatasync) with many
// concurrent appenders, so group commit batches them. bench/run-journal-bench compares the
// figures with fio's sequential write bandwidth on the same filesystem, in rounds that
// alternate with fio's.
//
// Workloads (each on a fresh replica, removed afterwards; FERRY_BENCH_APPEND_ONLY=a,b runs a
// subset):
//   append64k         16 appenders (FERRY_BENCH_APPEND64_THREADS), 64 KiB writes,
//                     FERRY_BENCH_APPEND64_BYTES in all (1 GiB; quick 64 MiB)
//   append4k          32 appenders (FERRY_BENCH_APPEND4_THREADS), 4 KiB writes,
//                     FERRY_BENCH_APPEND4_BYTES in all (256 MiB; quick 8 MiB)
//   append64k_single  one appender, 64 KiB writes: the same work as fio --fdatasync=1
//                     (128 MiB; quick 8 MiB)
//   append64k_wide    as append64k with 4x the appenders: how throughput follows the data in
//                     flight (information)
//   append4k_wide     as append4k with 8x the appenders (information)
//   append64k_frames  one appender handing 16 records of 64 KiB (1 MiB) to each Append call,
//                     as a link receiver appends each frame it receives (information)
//   append4k_frames   the same with 256 records of 4 KiB per call (information)
//   append64k_reused  as append64k, on a replica whose earlier segments were merged into its
//                     base and are reused (ReplicaOptions::recycle_segments): a replica in
//                     steady state, retention merging as the link appends (information)
// Except in the _frames workloads, each record is one Append call, at a random block-aligned offset of a 16 GiB volume; each
// workload stops early after FERRY_BENCH_APPEND_SECONDS (6; quick 2) seconds. Throughput
// counts payload bytes only (as fio does); the 64-byte record headers are extra.
//
// FERRY_BENCH_DIRECT=0 appends through the page cache and fdatasync instead of direct,
// synchronous writes (ReplicaOptions::direct_appends, docs/decisions/0014), to compare the two.
//
// Usage: journal_append_bench --dir SCRATCH_DIR
#include <atomic>
#include <thread>

#include "bench_util.h"

namespace ferry::bench {
namespace {

constexpr uint64_t kVolumeSize = 16ull << 30;

void RunAppends(const std::string& scratch, const std::string& name, int threads,
                uint64_t record_bytes, uint64_t per_call, uint64_t total_bytes,
                double max_seconds, bool reused = false) {
  ScratchDir dir(scratch, name);
  journal::CreateParams p;
  p.size = kVolumeSize;
  p.block_size = 4096;
  journal::ReplicaOptions options;
  options.direct_appends = DirectAppends();
  ManualClock clock;
  options.clock = &clock;
  if (reused) {
    options.segment_target_bytes = total_bytes / 8;
    options.recycle_segments = 8;
  }
  auto replica = Must(journal::Replica::Create(dir.Sub("replica"), p, options), "create replica");
  if (reused) {
    // A replica in steady state: what the link appended earlier was merged into the base, and
    // its segment files are taken again by the appends measured below.
    std::vector<journal::Record> frame;
    for (int k = 0; k < 16; ++k) frame.push_back(journal::Record::Write(0, RandomBytes(64 << 10, 7 + k)));
    std::mt19937_64 rng(8);
    for (uint64_t done = 0; done < total_bytes; done += 16 * (64 << 10)) {
      for (journal::Record& r : frame) {
        r.seq = 0;
        r.timestamp_ns = 0;
        r.offset = (rng() % (kVolumeSize / (64 << 10))) * (64 << 10);
      }
      Must(replica->Append(std::span<journal::Record>(frame)), "prefill");
    }
    clock.Advance(3600ll * 1000 * 1000 * 1000);
    journal::RetentionPolicy policy;
    policy.window_ns = 1;
    policy.any_point_ns = 0;
    Must(replica->ApplyRetention(policy), "merge the prefill");
  }

  const uint64_t calls_per_thread =
      std::max<uint64_t>(1, total_bytes / record_bytes / per_call / threads);
  const uint64_t slots = kVolumeSize / record_bytes;
  std::atomic<bool> go{false};
  std::atomic<double> start{0};
  std::atomic<int> ready{0};
  std::vector<std::vector<double>> latencies(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      std::vector<journal::Record> recs;
      for (uint64_t k = 0; k < per_call; ++k) {
        recs.push_back(journal::Record::Write(0, RandomBytes(record_bytes, 1000 + t * 1000 + k)));
      }
      std::vector<double>& lat = latencies[t];
      lat.reserve(calls_per_thread);
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      const double deadline = start.load() + max_seconds;
      for (uint64_t i = 0; i < calls_per_thread && Seconds() < deadline; ++i) {
        // The caller's buffers are reused, as a network receiver's would be.
        for (journal::Record& rec : recs) {
          rec.seq = 0;
          rec.timestamp_ns = 0;
          rec.offset = (rng() % slots) * record_bytes;
        }
        double t0 = Seconds();
        Must(replica->Append(std::span<journal::Record>(recs)), "append");
        lat.push_back(Seconds() - t0);
      }
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  const journal::ReplicaStats before = replica->Stats();
  start.store(Seconds());
  go.store(true);
  for (auto& w : workers) w.join();
  const double elapsed = Seconds() - start.load();
  const journal::ReplicaStats after = replica->Stats();

  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  const double records = static_cast<double>(all.size() * per_call);
  const double bytes = records * static_cast<double>(record_bytes);
  const double syncs = static_cast<double>(after.syncs - before.syncs);
  Log("%s: %d threads, %zu calls of %" PRIu64 " x %" PRIu64 " KiB: %.1f MiB in %.2f s = "
      "%.1f MiB/s; %.0f group commits (avg %.0f KiB, %.1f records each); call latency p50 "
      "%.2f ms p99 %.2f ms",
      name.c_str(), threads, all.size(), per_call, record_bytes >> 10, MiB(bytes), elapsed,
      MiB(bytes) / elapsed, syncs, MiB(bytes) * 1024 / syncs, records / syncs,
      Percentile(all, 0.5) * 1e3, Percentile(all, 0.99) * 1e3);
  Emit(name + "_mibps", MiB(bytes) / elapsed);
  Emit(name + "_threads", threads);
  Emit(name + "_batch_kib", MiB(bytes) * 1024 / syncs);
  Emit(name + "_commits_per_s", syncs / elapsed);
  Emit(name + "_p50_ms", Percentile(all, 0.5) * 1e3);
  Emit(name + "_p99_ms", Percentile(all, 0.99) * 1e3);
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) {
  using namespace ferry::bench;
  const std::string scratch = ScratchDirArg(argc, argv);
  const double secs = EnvDouble("FERRY_BENCH_APPEND_SECONDS", 6, 2);
  const int t64 = static_cast<int>(EnvU64("FERRY_BENCH_APPEND64_THREADS", 16, 16));
  const int t4 = static_cast<int>(EnvU64("FERRY_BENCH_APPEND4_THREADS", 32, 32));
  const uint64_t b64 = EnvU64("FERRY_BENCH_APPEND64_BYTES", 1ull << 30, 64ull << 20);
  const uint64_t b4 = EnvU64("FERRY_BENCH_APPEND4_BYTES", 256ull << 20, 8ull << 20);
  const std::vector<std::string> only = [] {
    std::vector<std::string> names;
    const char* v = std::getenv("FERRY_BENCH_APPEND_ONLY");
    std::string text = v ? v : "";
    for (size_t pos = 0; pos < text.size();) {
      size_t comma = std::min(text.find(',', pos), text.size());
      names.push_back(text.substr(pos, comma - pos));
      pos = comma + 1;
    }
    return names;
  }();
  auto run = [&](const std::string& name, int threads, uint64_t record, uint64_t per_call,
                 uint64_t bytes, bool reused = false) {
    if (only.empty() || std::find(only.begin(), only.end(), name) != only.end()) {
      RunAppends(scratch, name, threads, record, per_call, bytes, secs, reused);
    }
  };
  run("append64k", t64, 64 << 10, 1, b64);
  run("append4k", t4, 4 << 10, 1, b4);
  run("append64k_single", 1, 64 << 10, 1, b64 / 8);
  run("append64k_wide", 4 * t64, 64 << 10, 1, b64);
  run("append4k_wide", 8 * t4, 4 << 10, 1, b4);
  run("append64k_frames", 1, 64 << 10, 16, b64);
  run("append4k_frames", 1, 4 << 10, 256, b4);
  run("append64k_reused", t64, 64 << 10, 1, b64, true);
  return 0;
}
