// A replica with a long journal: how fast a view opens, how fast the replica reopens (the
// index is rebuilt from the segments), and how much memory the index takes per record.
//
// For each volume size in FERRY_BENCH_VIEW_VOLUMES_GIB (1,4,64; the bases are sparse) a fresh
// replica gets FERRY_BENCH_VIEW_RECORDS records (1,000,000; quick 50,000): 4 KiB writes at
// random blocks, FERRY_BENCH_VIEW_BATCH (4096) records per Append call, the last record of
// each call a crash-consistent marker. Then, per volume:
//   open_ms_first / _median / _max   Replica::OpenView at the newest, the middle and random
//                                    points (FERRY_BENCH_VIEW_OPENS opens, 30)
//   first_read_ms                    the first 4 KiB read of a fresh view (resolves a chunk),
//                                    median of 10 views
//   index_bytes_per_record           ReplicaStats::index_bytes / records
//   mid_index_bytes_per_record       the same after 60% of the records (mid_records)
//   rss_bytes_per_record             process RSS growth across Replica::Open / records
//   reopen_cold_s, reopen_warm_s     Replica::Open after the segments were dropped from the
//                                    page cache (posix_fadvise; direct appends left little
//                                    there), then again with them cached by that open
//
// Usage: journal_view_bench --dir SCRATCH_DIR
#include "bench_util.h"

namespace ferry::bench {
namespace {

constexpr uint64_t kBlock = 4096;

// Appends `records` records; after the call that reaches `checkpoint` records, calls
// at_checkpoint().
template <typename Fn>
void Build(journal::Replica& replica, uint64_t records, uint64_t per_call, uint64_t checkpoint,
           Fn at_checkpoint) {
  const uint64_t blocks = replica.size() / kBlock;
  const std::string pool = RandomBytes(16 << 20, 3);
  std::mt19937_64 rng(4);
  std::vector<journal::Record> batch;
  for (uint64_t i = 0; i + 1 < per_call; ++i) {
    batch.push_back(journal::Record::Write(0, std::string(kBlock, '\0')));
  }
  batch.push_back(journal::Record::Marker(journal::MarkerKind::kCrashConsistent, "bench"));
  for (uint64_t done = 0; done < records;) {
    const uint64_t n = std::min(per_call, records - done);
    for (uint64_t i = 0; i < n; ++i) {
      journal::Record& r = batch[i];
      r.seq = 0;
      r.timestamp_ns = 0;
      if (r.type == journal::RecordType::kWrite) {
        r.offset = (rng() % blocks) * kBlock;
        r.data.assign(pool, (rng() % (pool.size() / kBlock)) * kBlock, kBlock);
      }
    }
    Must(replica.Append(std::span<journal::Record>(batch.data(), n)), "append");
    if (done < checkpoint && done + n >= checkpoint) at_checkpoint();
    done += n;
  }
}

double OpenViewMs(journal::Replica& replica, uint64_t seq) {
  double t0 = Seconds();
  auto view = Must(replica.OpenView(seq), "open view");
  double ms = (Seconds() - t0) * 1e3;
  return ms;
}

void RunVolume(const std::string& scratch, uint64_t gib, uint64_t records, uint64_t per_call,
               int opens) {
  const std::string tag = "view_" + std::to_string(gib) + "g";
  ScratchDir dir(scratch, tag);
  const std::string path = dir.Sub("replica");
  journal::CreateParams p;
  p.size = gib << 30;
  p.block_size = kBlock;
  {
    journal::ReplicaOptions options;
    options.direct_appends = DirectAppends();
    auto replica = Must(journal::Replica::Create(path, p, options), "create replica");
    double t0 = Seconds();
    // Index memory part way, where the entry vector's capacity is not a near fit.
    const uint64_t checkpoint = records * 6 / 10;
    Build(*replica, records, per_call, checkpoint, [&] {
      const journal::ReplicaStats mid = replica->Stats();
      Emit(tag + "_mid_records", static_cast<double>(mid.records));
      Emit(tag + "_mid_index_bytes_per_record",
           static_cast<double>(mid.index_bytes) / static_cast<double>(mid.records));
    });
    double build_s = Seconds() - t0;
    const journal::ReplicaStats st = replica->Stats();
    Log("%s: built %" PRIu64 " records (%.0f MiB of journal) in %.1f s", tag.c_str(), st.records,
        MiB(static_cast<double>(st.journal_bytes)), build_s);
    Emit(tag + "_records", static_cast<double>(st.records));
    Emit(tag + "_build_mibps", MiB(static_cast<double>(st.journal_bytes)) / build_s);
    Emit(tag + "_index_bytes_per_record",
         static_cast<double>(st.index_bytes) / static_cast<double>(st.records));

    // Views: the newest point, the middle of the history, and points spread over it.
    const uint64_t first = st.oldest_point + 1, last = st.last_seq;
    std::vector<double> ms;
    const double first_ms = OpenViewMs(*replica, last);
    ms.push_back(first_ms);
    std::mt19937_64 rng(5);
    for (int i = 1; i < opens; ++i) {
      uint64_t seq = i % 3 == 0 ? last : i % 3 == 1 ? first + (last - first) / 2
                                                    : first + rng() % (last - first + 1);
      ms.push_back(OpenViewMs(*replica, seq));
    }
    // First reads: each on a fresh view (nothing resolved yet) at a random block.
    std::vector<double> first_reads;
    std::string buf(kBlock, '\0');
    for (int i = 0; i < 10; ++i) {
      auto view = Must(replica->OpenView(first + (last - first) / 2), "open view");
      const uint64_t block = rng() % (p.size / kBlock);
      double t1 = Seconds();
      Check(view->Read(block * kBlock, kBlock, buf.data()), "first read");
      first_reads.push_back((Seconds() - t1) * 1e3);
    }
    const double first_read_ms = Percentile(first_reads, 0.5);
    Log("%s: first reads (ms): %s", tag.c_str(), [&] {
      std::string out;
      for (double v : first_reads) out += std::to_string(v).substr(0, 6) + " ";
      return out;
    }().c_str());
    Log("%s: OpenView first %.3f ms, median %.3f ms, max %.3f ms over %d opens; first 4 KiB "
        "read %.3f ms", tag.c_str(), first_ms, Percentile(ms, 0.5), Percentile(ms, 1.0), opens,
        first_read_ms);
    Emit(tag + "_open_ms_first", first_ms);
    Emit(tag + "_open_ms_median", Percentile(ms, 0.5));
    Emit(tag + "_open_ms_max", Percentile(ms, 1.0));
    Emit(tag + "_first_read_ms", first_read_ms);
  }

  // Reopen: the index is rebuilt from the segments (cold page cache, then warm).
  EvictFromPageCache(path);
  const uint64_t rss_before = TrimmedRssBytes();
  double t0 = Seconds();
  auto replica = Must(journal::Replica::Open(path), "open replica (cold)");
  const double cold_s = Seconds() - t0;
  const uint64_t rss_after = TrimmedRssBytes();
  const journal::ReplicaStats st = replica->Stats();
  const double rss_per_record =
      (static_cast<double>(rss_after) - static_cast<double>(rss_before)) /
      static_cast<double>(st.records);
  replica.reset();
  t0 = Seconds();
  replica = Must(journal::Replica::Open(path), "open replica (warm)");
  const double warm_s = Seconds() - t0;
  replica.reset();
  Log("%s: Replica::Open warm %.2f s, cold %.2f s; index %.1f B/record (Stats), RSS growth "
      "%.1f B/record", tag.c_str(), warm_s, cold_s,
      static_cast<double>(st.index_bytes) / static_cast<double>(st.records), rss_per_record);
  Emit(tag + "_reopen_warm_s", warm_s);
  Emit(tag + "_reopen_cold_s", cold_s);
  Emit(tag + "_rss_bytes_per_record", rss_per_record);
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) {
  using namespace ferry::bench;
  const std::string scratch = ScratchDirArg(argc, argv);
  const uint64_t records = EnvU64("FERRY_BENCH_VIEW_RECORDS", 1'000'000, 50'000);
  const uint64_t per_call = std::max<uint64_t>(2, EnvU64("FERRY_BENCH_VIEW_BATCH", 4096, 4096));
  const int opens = static_cast<int>(EnvU64("FERRY_BENCH_VIEW_OPENS", 30, 10));
  for (uint64_t gib : EnvList("FERRY_BENCH_VIEW_VOLUMES_GIB", "1,4,64", "1,4,64")) {
    RunVolume(scratch, gib, records, per_call, opens);
  }
  return 0;
}
