// Test helpers: whether a filesystem takes direct I/O past its page cache, and how much of a
// file sits in the page cache (mincore over a mapping). Test-only.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::test {

// Whether files in dir can be opened with O_DIRECT (tmpfs before Linux 6.6 refuses it) and
// written past the page cache (tmpfs never is: its files live there). Creates and removes
// dir/probe.
inline bool DirectIoBypassesCache(const std::string& dir) {
  const std::string probe = dir + "/direct-io-probe";
  const int fd = ::open(probe.c_str(), O_CREAT | O_WRONLY | O_DIRECT | O_CLOEXEC, 0644);
  struct statfs fs {};
  const bool direct = fd >= 0 && ::statfs(dir.c_str(), &fs) == 0 && fs.f_type != TMPFS_MAGIC;
  if (fd >= 0) ::close(fd);
  ::unlink(probe.c_str());
  return direct;
}

// How many of the file's pages in [offset, offset+n) are in the page cache.
inline size_t CachedPages(const std::string& path, uint64_t offset, size_t n) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  void* map = ::mmap(nullptr, offset + n, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  EXPECT_NE(map, MAP_FAILED) << path;
  if (map == MAP_FAILED) return 0;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((offset + n + page - 1) / page);
  EXPECT_EQ(::mincore(map, offset + n, resident.data()), 0);
  ::munmap(map, offset + n);
  size_t cached = 0;
  for (size_t i = offset / page; i < resident.size(); ++i) cached += resident[i] & 1;
  return cached;
}

}  // namespace ferry::test
