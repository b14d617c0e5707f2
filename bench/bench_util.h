// Shared helpers for the replica engine's benchmarks (bench/journal_*_bench.cc).
//
// The benchmark programs measure; they never assert a timing. Each prints its figures as
// lines "RESULT <key> <value>" on stdout (bench/run-journal-bench turns them into the table
// with the peers' figures and the targets) and progress for humans on stderr.
//
// Sizes come from environment variables so one build serves a full run and a smoke run:
// FERRY_BENCH_QUICK=1 switches every default to its small value; a variable named in a
// program (e.g. FERRY_BENCH_APPEND_BYTES) overrides either.
//
// Benchmarks use the engine on a real directory through PosixEnv, like production. Timing
// uses std::chrono::steady_clock: a benchmark measures the wall, which is the point.
// A setup failure (the engine returned an error) ends the program with exit code 2 and the
// status on stderr; the figures would mean nothing.
#pragma once

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "journal/replica.h"
#include "journal/view.h"

namespace ferry::bench {

inline bool QuickMode() {
  const char* q = std::getenv("FERRY_BENCH_QUICK");
  return q != nullptr && *q != '\0' && std::string_view(q) != "0";
}

// The value of environment variable `name` (an unsigned integer), else the default for the
// current mode.
inline uint64_t EnvU64(const char* name, uint64_t full, uint64_t quick) {
  const char* v = std::getenv(name);
  if (v != nullptr && *v != '\0') return std::strtoull(v, nullptr, 10);
  return QuickMode() ? quick : full;
}

inline double EnvDouble(const char* name, double full, double quick) {
  const char* v = std::getenv(name);
  if (v != nullptr && *v != '\0') return std::strtod(v, nullptr);
  return QuickMode() ? quick : full;
}

// Comma-separated unsigned integers, e.g. FERRY_BENCH_VIEW_VOLUMES_GIB=1,4,64.
inline std::vector<uint64_t> EnvList(const char* name, std::string_view full,
                                     std::string_view quick) {
  const char* v = std::getenv(name);
  std::string text =
      (v != nullptr && *v != '\0') ? std::string(v) : std::string(QuickMode() ? quick : full);
  std::vector<uint64_t> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    if (comma > pos) {
      out.push_back(std::strtoull(text.substr(pos, comma - pos).c_str(), nullptr, 10));
    }
    pos = comma + 1;
  }
  return out;
}

[[noreturn]] inline void Fail(std::string_view what, const Status& s) {
  std::fprintf(stderr, "bench: %.*s: %s\n", static_cast<int>(what.size()), what.data(),
               s.ToString().c_str());
  std::exit(2);
}

inline void Check(const Status& s, std::string_view what) {
  if (!s.ok()) Fail(what, s);
}

template <typename T>
T Must(Result<T> r, std::string_view what) {
  if (!r.ok()) Fail(what, r.status());
  return std::move(r).value();
}

inline double Seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline void Emit(std::string_view key, double value) {
  std::printf("RESULT %.*s %.6g\n", static_cast<int>(key.size()), key.data(), value);
  std::fflush(stdout);
}

inline void Log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void Log(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
}

// "--dir DIR" from the command line: where the benchmark makes its scratch directories. It
// must be on the filesystem the peers (fio, plain files) measure.
inline std::string ScratchDirArg(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string_view(argv[i]) == "--dir") return argv[i + 1];
  }
  std::fprintf(stderr, "usage: %s --dir SCRATCH_DIR (on a real filesystem, not tmpfs)\n", argv[0]);
  std::exit(1);
}

// A scratch directory removed (with everything in it) when this goes out of scope.
class ScratchDir {
 public:
  ScratchDir(const std::string& parent, const std::string& name)
      : path_(parent + "/" + name) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    // The filesystem may discard freed blocks at its next commit; pay that now, not in the
    // next measurement.
    int fd = ::open(std::filesystem::path(path_).parent_path().c_str(), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
      ::syncfs(fd);
      ::close(fd);
    }
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Deterministic incompressible bytes.
inline std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, 8);
  }
  for (; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

// Resident set size of this process, from /proc/self/statm.
inline uint64_t RssBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// Returns freed heap to the OS so that RSS differences show live memory.
inline uint64_t TrimmedRssBytes() {
  malloc_trim(0);
  return RssBytes();
}

// Drops every file under dir from the page cache (the files must be synced, which the engine
// guarantees for everything it acknowledged), so the next reads go to the disk.
inline void EvictFromPageCache(const std::string& dir) {
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    int fd = ::open(entry.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

inline double MiB(double bytes) { return bytes / (1024.0 * 1024.0); }

// Appends `records` to the replica in calls of up to `per_call` records; dies on error.
inline void AppendAll(journal::Replica& r, std::vector<journal::Record>& records, size_t per_call) {
  for (size_t i = 0; i < records.size(); i += per_call) {
    size_t n = std::min(per_call, records.size() - i);
    Must(r.Append(std::span<journal::Record>(records.data() + i, n)), "append");
  }
}

// ReplicaOptions::direct_appends for the benchmarks' replicas: on unless FERRY_BENCH_DIRECT=0
// (to compare appends through the page cache and fdatasync, docs/decisions/0014).
inline bool DirectAppends() {
  const char* v = std::getenv("FERRY_BENCH_DIRECT");
  return v == nullptr || std::string_view(v) != "0";
}

// A replica holding a realistic volume: a base image full of data (written through the
// journal, then merged into base.img by retention, as in production) and a journal of writes
// at random block-aligned offsets whose bytes add up to `overwrite_fraction` of the volume
// (repeats allowed, as real workloads have). Each write's size is 4 KiB times a power of two
// up to max_write_kib, chosen uniformly (max_write_kib = 4: all 4 KiB, the worst case for
// fragmentation). Uses `clock`, which it advances past the retention window.
inline std::shared_ptr<journal::Replica> BuildImageReplica(const std::string& dir, uint64_t size,
                                                           double overwrite_fraction,
                                                           uint64_t max_write_kib,
                                                           ManualClock* clock,
                                                           double* merge_seconds = nullptr) {
  journal::ReplicaOptions opts;
  opts.clock = clock;
  opts.direct_appends = DirectAppends();
  journal::CreateParams p;
  p.size = size;
  p.block_size = 4096;
  auto replica = Must(journal::Replica::Create(dir, p, opts), "create replica");

  // Base content: 1 MiB writes covering the volume, merged into the base.
  constexpr uint64_t kBaseRecord = 1 << 20;
  const std::string pool = RandomBytes(8 << 20, 1);
  std::vector<journal::Record> batch;
  for (uint64_t off = 0; off < size; off += kBaseRecord) {
    uint64_t len = std::min(kBaseRecord, size - off);
    size_t at = static_cast<size_t>((off / kBaseRecord * 4096 * 7) % (pool.size() - kBaseRecord));
    batch.push_back(journal::Record::Write(off, pool.substr(at, len)));
    if (batch.size() == 16) {
      AppendAll(*replica, batch, batch.size());
      batch.clear();
    }
  }
  if (!batch.empty()) AppendAll(*replica, batch, batch.size());
  batch.clear();
  clock->Advance(2 * journal::kNanosPerHour);
  journal::RetentionPolicy policy;
  policy.window_ns = journal::kNanosPerHour;
  policy.any_point_ns = journal::kNanosPerHour;
  double t0 = Seconds();
  auto report = Must(replica->ApplyRetention(policy), "merge base");
  if (merge_seconds != nullptr) *merge_seconds = Seconds() - t0;
  if (report.merged_to_seq == 0) Fail("merge base", Internal("retention merged nothing"));

  // The journal: overwrites at random places.
  const uint64_t blocks = size / 4096;
  std::vector<uint64_t> sizes;
  for (uint64_t kib = 4; kib <= std::max<uint64_t>(4, max_write_kib); kib *= 2) {
    sizes.push_back(kib << 10);
  }
  const uint64_t want = static_cast<uint64_t>(overwrite_fraction * static_cast<double>(size));
  std::mt19937_64 rng(2);
  for (uint64_t written = 0; written < want;) {
    const uint64_t len = sizes[rng() % sizes.size()];
    const uint64_t block = rng() % (blocks - len / 4096 + 1);
    size_t at = static_cast<size_t>(rng() % (pool.size() / len)) * len;
    batch.push_back(journal::Record::Write(block * 4096, pool.substr(at, len)));
    written += len;
    if (batch.size() == 1024) {
      batch.push_back(journal::Record::Marker(journal::MarkerKind::kCrashConsistent));
      AppendAll(*replica, batch, batch.size());
      batch.clear();
    }
  }
  if (!batch.empty()) AppendAll(*replica, batch, batch.size());
  return replica;
}

}  // namespace ferry::bench
