// Reads from a view against the same reads (pread) from a plain file with the same content,
// both with a warm page cache, in the same run.
//
// The volume (FERRY_BENCH_READ_VOLUME_MIB, 1024; quick 64) is a base image full of data plus a
// journal of writes at random places adding up to FERRY_BENCH_READ_OVERWRITE (0.10) of the
// volume (see BuildImageReplica). Two journals, each on its own replica:
//   read_*      writes of 4, 8, 16, 32 or 64 KiB (the realistic case)
//   read_w4k_*  4 KiB writes only (the worst case: the most fragmented view)
// The plain file is the view's content copied out through the view. Figures, per case:
//   _rand4k_view_iops / _rand4k_file_iops   FERRY_BENCH_READ_RANDOM_OPS (300,000; quick 20,000)
//                                           random block-aligned 4 KiB reads, same offsets
//   _seq1m_view_mibps / _seq1m_file_mibps   whole-volume passes of 1 MiB reads
//   _rand4k_fresh_view_iops                 the random reads on a newly opened view (chunk
//                                           resolutions not cached yet); information only
// Each side runs FERRY_BENCH_READ_ROUNDS (3; quick 2) rounds, alternating with the other, and
// keeps its best round, so that other load on the machine hurts both sides alike.
//
// Usage: journal_read_bench --dir SCRATCH_DIR
#include "bench_util.h"

namespace ferry::bench {
namespace {

constexpr uint64_t kBlock = 4096;

struct FileReader {
  int fd;
  void Read(uint64_t off, size_t n, char* dst) const {
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd, dst + done, n - done, static_cast<off_t>(off + done));
      if (r <= 0) Fail("pread plain file", IoError(std::strerror(errno)));
      done += static_cast<size_t>(r);
    }
  }
};

// Returns the seconds taken to read every offset (n bytes each) with read(off, n, buf). The
// buffer is page-aligned: how the kernel's and memcpy's copies perform depends on the
// destination's alignment, which a heap allocation would leave to chance (a different binary
// or allocation order read the plain file 15% faster or slower).
template <typename ReadFn>
double TimeReads(const std::vector<uint64_t>& offsets, size_t n, ReadFn read) {
  DirectBuffer storage;
  char* buf = storage.Reserve(n);
  std::memset(buf, 0, n);
  double t0 = Seconds();
  for (uint64_t off : offsets) read(off, n, buf);
  return Seconds() - t0;
}

// One volume: `tag` prefixes its figures.
void RunCase(const std::string& scratch, const std::string& tag, uint64_t size, double overwrite,
             uint64_t max_write_kib, uint64_t ops, int rounds) {
  ScratchDir dir(scratch, tag);
  ManualClock clock;
  auto replica = BuildImageReplica(dir.Sub("replica"), size, overwrite, max_write_kib, &clock);
  const journal::ReplicaStats st = replica->Stats();
  Log("%s: %" PRIu64 " MiB volume, base + %" PRIu64 " journal records (4..%" PRIu64
      " KiB writes of %.0f%% of the volume's bytes, with repeats)", tag.c_str(), size >> 20,
      st.records, max_write_kib, overwrite * 100);
  auto view = Must(replica->OpenView(st.last_seq), "open view");
  auto view_read = [&](uint64_t off, size_t n, char* dst) {
    Check(view->Read(off, n, dst), "view read");
  };

  // The peer: a plain file holding the view's content.
  const std::string plain = dir.Sub("plain.img");
  int fd = ::open(plain.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) Fail("create plain file", IoError(std::strerror(errno)));
  {
    std::string buf(1 << 20, '\0');
    for (uint64_t off = 0; off < size; off += buf.size()) {
      view_read(off, buf.size(), buf.data());
      ssize_t w = ::pwrite(fd, buf.data(), buf.size(), static_cast<off_t>(off));
      if (w != static_cast<ssize_t>(buf.size())) {
        Fail("write plain file", IoError(std::strerror(errno)));
      }
    }
    ::fdatasync(fd);
  }
  FileReader file{fd};
  auto file_read = [&](uint64_t off, size_t n, char* dst) { file.Read(off, n, dst); };

  std::vector<uint64_t> seq_offsets;
  for (uint64_t off = 0; off < size; off += 1 << 20) seq_offsets.push_back(off);
  std::vector<uint64_t> rand_offsets;
  std::mt19937_64 rng(6);
  for (uint64_t i = 0; i < ops; ++i) rand_offsets.push_back((rng() % (size / kBlock)) * kBlock);

  // Sanity: both sides hold the same bytes (a benchmark of wrong reads would be worthless).
  {
    std::string a(kBlock, '\0'), b(kBlock, '\0');
    for (size_t i = 0; i < rand_offsets.size(); i += 97) {
      view_read(rand_offsets[i], kBlock, a.data());
      file.Read(rand_offsets[i], kBlock, b.data());
      if (a != b) {
        Fail("compare", DataLoss("view and plain file differ at " + std::to_string(rand_offsets[i])));
      }
    }
  }
  // Warm-up: page cache for base, segments and the plain file; the view's chunk cache.
  TimeReads(seq_offsets, 1 << 20, view_read);
  TimeReads(seq_offsets, 1 << 20, file_read);

  double best[4] = {1e30, 1e30, 1e30, 1e30};  // rand view, rand file, seq view, seq file
  for (int r = 0; r < rounds; ++r) {
    best[0] = std::min(best[0], TimeReads(rand_offsets, kBlock, view_read));
    best[1] = std::min(best[1], TimeReads(rand_offsets, kBlock, file_read));
    best[2] = std::min(best[2], TimeReads(seq_offsets, 1 << 20, view_read));
    best[3] = std::min(best[3], TimeReads(seq_offsets, 1 << 20, file_read));
  }
  const double n = static_cast<double>(ops);
  const double mib = MiB(static_cast<double>(size));
  Log("%s: random 4 KiB: view %.0f IOPS, file %.0f IOPS (ratio %.2f); sequential 1 MiB: "
      "view %.0f MiB/s, file %.0f MiB/s (ratio %.2f)", tag.c_str(), n / best[0], n / best[1],
      best[1] / best[0], mib / best[2], mib / best[3], best[3] / best[2]);
  Emit(tag + "_rand4k_view_iops", n / best[0]);
  Emit(tag + "_rand4k_file_iops", n / best[1]);
  Emit(tag + "_seq1m_view_mibps", mib / best[2]);
  Emit(tag + "_seq1m_file_mibps", mib / best[3]);

  // A view just opened: chunk resolutions are made as the reads reach them.
  view.reset();
  auto fresh = Must(replica->OpenView(st.last_seq), "open view");
  double t = TimeReads(rand_offsets, kBlock, [&](uint64_t off, size_t len, char* dst) {
    Check(fresh->Read(off, len, dst), "view read");
  });
  Log("%s: random 4 KiB on a fresh view: %.0f IOPS", tag.c_str(), n / t);
  Emit(tag + "_rand4k_fresh_view_iops", n / t);
  ::close(fd);
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) {
  using namespace ferry::bench;
  const std::string scratch = ScratchDirArg(argc, argv);
  const uint64_t size = EnvU64("FERRY_BENCH_READ_VOLUME_MIB", 1024, 64) << 20;
  const double overwrite = EnvDouble("FERRY_BENCH_READ_OVERWRITE", 0.10, 0.10);
  const uint64_t ops = EnvU64("FERRY_BENCH_READ_RANDOM_OPS", 300'000, 20'000);
  const int rounds = static_cast<int>(EnvU64("FERRY_BENCH_READ_ROUNDS", 3, 2));
  RunCase(scratch, "read", size, overwrite, 64, ops, rounds);
  RunCase(scratch, "read_w4k", size, overwrite, 4, ops, rounds);
  return 0;
}
