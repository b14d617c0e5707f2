// A probe of the filesystem, not of the engine: how much durable append throughput do
// overlapping commits buy? K committer threads share one appending file; each in turn writes
// the next batch (writes are serialised, in file order) and then calls fdatasync without
// holding the lock, so with K >= 2 the next batch is written while the previous one syncs.
// K = 1 is what Replica's group commit does today (write + sync, then the next batch).
// bench/RESULTS.md uses it to size the proposed pipelined group commit.
//
// Usage: commit_overlap_probe FILE BATCH_KIB COMMITTERS TOTAL_MIB
// Prints the throughput; removes FILE.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s FILE BATCH_KIB COMMITTERS TOTAL_MIB\n", argv[0]);
    return 1;
  }
  const char* path = argv[1];
  const size_t batch = std::strtoull(argv[2], nullptr, 10) << 10;
  const int committers = std::atoi(argv[3]);
  const size_t total = std::strtoull(argv[4], nullptr, 10) << 20;
  if (batch == 0 || committers < 1 || total < batch) {
    std::fprintf(stderr, "%s: batch, committers and total must be positive, total >= batch\n",
                 argv[0]);
    return 1;
  }
  int fd = ::open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    std::perror(path);
    return 1;
  }
  std::string buf(batch, '\0');
  std::mt19937_64 rng(1);
  for (char& c : buf) c = static_cast<char>(rng());

  std::mutex mu;
  size_t end = 0;
  std::atomic<bool> failed{false};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < committers; ++i) {
    threads.emplace_back([&] {
      for (;;) {
        {
          std::lock_guard l(mu);
          if (end >= total || failed.load()) return;
          ssize_t w = ::pwrite(fd, buf.data(), batch, static_cast<off_t>(end));
          if (w != static_cast<ssize_t>(batch)) {
            failed.store(true);
            return;
          }
          end += batch;
        }
        if (::fdatasync(fd) != 0) failed.store(true);
      }
    });
  }
  for (auto& t : threads) t.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(fd);
  ::unlink(path);
  if (failed.load()) {
    std::fprintf(stderr, "%s: write or fdatasync failed\n", argv[0]);
    return 1;
  }
  std::printf("batch %zu KiB, %d committer(s): %.1f MiB/s\n", batch >> 10, committers,
              static_cast<double>(total) / s / 1048576.0);
  return 0;
}
