// A probe of the machine, not of Ferry: what does a buffered write cost when it fills page
// cache pages that did not exist before, against one that overwrites cached pages? Every
// append to a journal or pending log is of the first kind; a disk rewritten in place, as
// nbdkit's file plugin does in the NBD benchmark, is of the second. On some virtual machines
// the first kind is many times slower, and slower still once freed memory has been handed
// back to the host (free page reporting), which makes any benchmark that appends depend on
// what the machine did a few seconds before.
//
// Usage: page_cache_probe DIR [MIB]   (default 1024 MiB per pass)
// Passes, each writing MIB in 1 MiB pwrites from one buffer:
//   new file; the same file again (overwrite); a new file just after deleting the first (pages
//   freed a moment ago); a new file 5 s after deleting the second.
// Prints GiB/s per pass; removes its files.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

double Pass(const std::string& path, size_t mib, bool truncate, const std::vector<char>& buf) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | (truncate ? O_TRUNC : 0), 0644);
  if (fd < 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < mib; ++i) {
    if (::pwrite(fd, buf.data(), buf.size(), static_cast<off_t>(i * buf.size())) !=
        static_cast<ssize_t>(buf.size())) {
      std::perror("pwrite");
      std::exit(1);
    }
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(fd);
  return static_cast<double>(mib) / 1024.0 / s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s DIR [MIB]\n", argv[0]);
    return 1;
  }
  const std::string dir = argv[1];
  const size_t mib = argc == 3 ? std::strtoull(argv[2], nullptr, 10) : 1024;
  if (mib == 0) {
    std::fprintf(stderr, "%s: MIB must be positive\n", argv[0]);
    return 1;
  }
  std::vector<char> buf(1 << 20, 'p');
  const std::string a = dir + "/page-cache-probe-a", b = dir + "/page-cache-probe-b",
                    c = dir + "/page-cache-probe-c";
  double fresh = Pass(a, mib, true, buf);
  double overwrite = Pass(a, mib, false, buf);
  ::unlink(a.c_str());
  double reused = Pass(b, mib, true, buf);
  ::unlink(b.c_str());
  std::this_thread::sleep_for(std::chrono::seconds(5));
  double later = Pass(c, mib, true, buf);
  ::unlink(c.c_str());
  std::printf("page cache writes, %zu MiB per pass, 1 MiB pwrite: new file %.2f GiB/s, "
              "overwrite %.2f GiB/s (%.1fx), new file right after a delete %.2f GiB/s, "
              "new file 5 s after a delete %.2f GiB/s\n",
              mib, fresh, overwrite, overwrite / fresh, reused, later);
  return 0;
}
