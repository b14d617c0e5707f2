// PosixEnv: Env on Linux files and block devices. Every call retries EINTR and loops over
// short transfers, so callers see either the whole request done or an error.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include "env/env.h"
#include "env/mapped_copy.h"

namespace ferry {
namespace {

// Maps errno to the Env error codes (see env.h); the message names the call and the path.
Status ErrnoStatus(std::string_view op, const std::string& path, int err) {
  std::string m(op);
  m += " ";
  m += path;
  m += ": ";
  m += std::strerror(err);
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      return ResourceExhausted(std::move(m));
    case ENOENT:
      return NotFound(std::move(m));
    case EEXIST:
      return AlreadyExists(std::move(m));
    default:
      return IoError(std::move(m));
  }
}

// A regular file, or a block device (a disk served by the splitter): fstat knows no size for
// a device, and a device cannot be resized, so those calls ask the device itself.
class PosixFile final : public File {
 public:
  PosixFile(int fd, std::string path, bool block_device)
      : fd_(fd), path_(std::move(path)), block_device_(block_device) {}
  ~PosixFile() override {  // close errors carry nothing we could act on
    for (const auto& m : mappings_) ::munmap(m->data, m->length);
    ::close(fd_);
    if (direct_fd_ >= 0) ::close(direct_fd_);
  }
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  Result<size_t> ReadAt(uint64_t offset, size_t n, void* dst) override {
    char* p = static_cast<char*>(dst);
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd_, p + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("pread", path_, errno);
      }
      if (r == 0) break;  // end of file
      done += static_cast<size_t>(r);
    }
    return done;
  }

  Result<size_t> ReadAtMapped(uint64_t offset, size_t n, void* dst) override {
    if (n == 0) return size_t{0};
    if (n > kMappedCachedReadMax) return ReadAt(offset, n, dst);
    const uint64_t end = offset + n;
    const Mapping* m = mapped_.load(std::memory_order_acquire);
    if (m == nullptr || end > m->length || end > mapped_size_.load(std::memory_order_acquire)) {
      m = MapThrough(end);
      if (m == nullptr) return ReadAt(offset, n, dst);  // past the end, or no mapping
    }
    // Faults would read a larger range one page at a time (MADV_RANDOM): what is not all
    // cached is read with read-ahead instead.
    if (n > kMappedReadMax && !Cached(m, offset, n)) return ReadAt(offset, n, dst);
    if (!CopyFromMapping(dst, m->data + offset, n)) {
      return IoError("reading " + path_ + " at " + std::to_string(offset) + "+" +
                     std::to_string(n) + " through its memory mapping failed (SIGBUS): the "
                     "file was cut short under it, or the device could not read it");
    }
    return n;
  }

  Status WriteAt(uint64_t offset, std::string_view data) override {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t r = ::pwrite(fd_, data.data() + done, data.size() - done,
                           static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("pwrite", path_, errno);
      }
      done += static_cast<size_t>(r);
    }
    return Status::Ok();
  }

  Status WriteAtV(uint64_t offset, std::span<const std::string_view> pieces) override {
    std::vector<iovec> iov;
    iov.reserve(pieces.size());
    for (std::string_view piece : pieces) {
      if (!piece.empty()) iov.push_back({const_cast<char*>(piece.data()), piece.size()});
    }
    size_t first = 0;  // first iovec not yet fully written
    while (first < iov.size()) {
      int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
      ssize_t r = ::pwritev(fd_, &iov[first], count, static_cast<off_t>(offset));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("pwritev", path_, errno);
      }
      offset += static_cast<uint64_t>(r);
      size_t left = static_cast<size_t>(r);
      while (first < iov.size() && left >= iov[first].iov_len) {
        left -= iov[first].iov_len;
        ++first;
      }
      if (left > 0) {  // short write ended inside this piece
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
      }
    }
    return Status::Ok();
  }

  Status Sync() override {
    while (::fdatasync(fd_) != 0) {
      if (errno != EINTR) return ErrnoStatus("fdatasync", path_, errno);
    }
    return Status::Ok();
  }

  Status WriteDurable(uint64_t offset, std::string_view data) override {
    const int fd = IsDirectWritable(offset, data) ? DirectFd() : -1;
    size_t done = 0;
    while (fd >= 0 && done < data.size()) {
      ssize_t r = ::pwrite(fd, data.data() + done, data.size() - done,
                           static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        // The filesystem or device refused this alignment before anything was written: the
        // buffered path below does the same job, from now on for this file.
        if (errno == EINVAL && done == 0) {
          std::lock_guard l(direct_mu_);
          direct_refused_ = true;
          break;
        }
        return ErrnoStatus("pwrite (O_DIRECT|O_DSYNC)", path_, errno);
      }
      done += static_cast<size_t>(r);
      if (done == data.size()) return Status::Ok();
      if (done % kDirectIoAlignment != 0) break;  // a short write off the alignment: finish buffered
    }
    RETURN_IF_ERROR(WriteAt(offset + done, data.substr(done)));
    return Sync();
  }

  void StartWriteback(uint64_t offset, uint64_t n) override {
    // Only a hint: an error here (a filesystem without it) changes nothing Sync will not do.
    (void)::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(n),
                            SYNC_FILE_RANGE_WRITE);
  }

  void DropCache(uint64_t offset, uint64_t n) override {
    (void)::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(n),
                          POSIX_FADV_DONTNEED);
  }

  Result<uint64_t> Size() override {
    if (block_device_) {
      uint64_t bytes = 0;
      if (::ioctl(fd_, BLKGETSIZE64, &bytes) != 0) return ErrnoStatus("ioctl(BLKGETSIZE64)", path_, errno);
      return bytes;
    }
    struct stat st;
    if (::fstat(fd_, &st) != 0) return ErrnoStatus("fstat", path_, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  Status Truncate(uint64_t size) override {
    if (block_device_) {
      ASSIGN_OR_RETURN(uint64_t device, Size());
      if (size == device) return Status::Ok();
      return FailedPrecondition("cannot resize " + path_ + " to " + std::to_string(size) +
                                " bytes: it is a block device of " + std::to_string(device) +
                                " bytes; resize the device itself (its volume or partition)");
    }
    while (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      if (errno != EINTR) return ErrnoStatus("ftruncate", path_, errno);
    }
    return Status::Ok();
  }

  // On a block device both are the kernel's zero-out (BLKZEROOUT): reads return zeros after;
  // a punch may unmap the blocks (a thin device frees them), a zero range keeps them.
  Status PunchHole(uint64_t offset, uint64_t n) override {
    return Fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, "fallocate(punch hole)", offset, n);
  }

  Status ZeroRange(uint64_t offset, uint64_t n) override {
    return Fallocate(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, "fallocate(zero range)", offset, n);
  }

  Result<uint64_t> NextData(uint64_t offset) override {
    if (block_device_) {
      // A device has no holes to find (lseek would say the same, where it knows SEEK_DATA).
      ASSIGN_OR_RETURN(uint64_t size, Size());
      return std::min(offset, size);
    }
    off_t r = ::lseek(fd_, static_cast<off_t>(offset), SEEK_DATA);
    if (r >= 0) return static_cast<uint64_t>(r);
    if (errno == ENXIO) return Size();  // only a hole (or nothing) from offset to the end
    if (errno == EINVAL || errno == EOPNOTSUPP) return offset;  // cannot tell: be conservative
    return ErrnoStatus("lseek(SEEK_DATA)", path_, errno);
  }

 private:
  // Where the filesystem or device cannot do `mode`, zeros written over the part of the
  // range inside the file (KEEP_SIZE) give the same reads, and keep the blocks allocated.
  Status Fallocate(int mode, std::string_view op, uint64_t offset, uint64_t n) {
    if (n == 0) return Status::Ok();
    while (::fallocate(fd_, mode, static_cast<off_t>(offset), static_cast<off_t>(n)) != 0) {
      if (errno == EINTR) continue;
      if (errno == EOPNOTSUPP || errno == ENOSYS) return File::ZeroRange(offset, n);
      return ErrnoStatus(op, path_, errno);
    }
    return Status::Ok();
  }

  struct Mapping {
    char* data;
    uint64_t length;
  };
  // Whether every page of [offset, offset+n) is in the page cache (n at most
  // kMappedCachedReadMax). An error answers no: ReadAt then does the read.
  static bool Cached(const Mapping* m, uint64_t offset, size_t n) {
    constexpr uint64_t kPage = 4096;
    unsigned char pages[kMappedCachedReadMax / kPage + 2];
    const uint64_t first = offset / kPage * kPage;
    const uint64_t length = offset + n - first;
    const size_t count = static_cast<size_t>((length + kPage - 1) / kPage);
    if (count > sizeof pages || ::mincore(m->data + first, length, pages) != 0) return false;
    for (size_t i = 0; i < count; ++i) {
      if ((pages[i] & 1) == 0) return false;
    }
    return true;
  }
  // The mapping that covers [0, end) of the file, made or grown as needed; nullptr where the
  // file ends before `end` or cannot be mapped (then ReadAt serves the read). A mapping
  // reserves more than the file holds, so that a file being appended to (a journal's newest
  // segment) is remapped only now and then; what lies past the file's end is never read
  // through it. Older mappings stay until the File goes: a reader may still be copying.
  const Mapping* MapThrough(uint64_t end) {
    constexpr uint64_t kReserveStep = 64ull << 20;
    std::lock_guard l(map_mu_);
    if (map_refused_ || block_device_) return nullptr;
    struct stat st;
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      map_refused_ = true;
      return nullptr;
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (end > size) return nullptr;
    if (mappings_.empty() || mappings_.back()->length < size) {
      const uint64_t length = (size + kReserveStep - 1) / kReserveStep * kReserveStep;
      void* p = ::mmap(nullptr, static_cast<size_t>(length), PROT_READ, MAP_SHARED, fd_, 0);
      if (p == MAP_FAILED) {
        map_refused_ = true;
        return nullptr;
      }
      // A fault reads only the page it needs: the reads that come here are small and
      // scattered, and the kernel's read-around would read far more around each (a whole
      // read_ahead_kb, 8 MiB on some virtual disks). Only a hint: ignore a refusal.
      (void)::madvise(p, static_cast<size_t>(length), MADV_RANDOM);
      mappings_.push_back(std::make_unique<Mapping>(Mapping{static_cast<char*>(p), length}));
      mapped_.store(mappings_.back().get(), std::memory_order_release);
    }
    // Only grows: a reader that saw a larger size keeps its promise (the file is not cut
    // short under a reader that keeps to what was written; if it is, the copy reports it).
    if (size > mapped_size_.load(std::memory_order_relaxed)) {
      mapped_size_.store(size, std::memory_order_release);
    }
    return mappings_.back().get();
  }

  // A second descriptor of the same file for WriteDurable, opened on first use through
  // /proc/self/fd (the file may have been renamed since it was opened). -1 where the
  // filesystem refuses O_DIRECT (then WriteDurable writes and syncs through fd_).
  int DirectFd() {
    std::lock_guard l(direct_mu_);
    if (direct_refused_) return -1;
    if (direct_fd_ < 0) {
      // Never a way around how the file was opened: a read-only file stays read-only.
      const int flags = ::fcntl(fd_, F_GETFL);
      if (flags < 0 || (flags & O_ACCMODE) == O_RDONLY) return -1;
      const std::string self = "/proc/self/fd/" + std::to_string(fd_);
      direct_fd_ = ::open(self.c_str(), O_WRONLY | O_DIRECT | O_DSYNC | O_CLOEXEC);
      if (direct_fd_ < 0) direct_refused_ = true;
    }
    return direct_refused_ ? -1 : direct_fd_;
  }

  const int fd_;
  const std::string path_;
  const bool block_device_;
  std::mutex direct_mu_;
  int direct_fd_ = -1;
  bool direct_refused_ = false;

  std::mutex map_mu_;
  std::vector<std::unique_ptr<Mapping>> mappings_;  // guarded by map_mu_; the newest last
  bool map_refused_ = false;                        // guarded by map_mu_
  std::atomic<const Mapping*> mapped_{nullptr};     // the newest mapping
  std::atomic<uint64_t> mapped_size_{0};            // bytes of the file known to be there
};

class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override { ::close(fd_); }  // closing releases the flock

 private:
  const int fd_;
};

class PosixEnv final : public Env {
 public:
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return IoError(path + ": cannot open lock file: " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) {
        return FailedPrecondition(path + " is locked: another process is using it");
      }
      return IoError(path + ": cannot lock: " + std::strerror(err));
    }
    return std::unique_ptr<FileLock>(new PosixFileLock(fd));
  }

  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case OpenMode::kRead: flags |= O_RDONLY; break;
      case OpenMode::kReadWrite: flags |= O_RDWR; break;
      case OpenMode::kCreate: flags |= O_RDWR | O_CREAT; break;
      case OpenMode::kCreateNew: flags |= O_RDWR | O_CREAT | O_EXCL; break;
    }
    int fd;
    do {
      fd = ::open(path.c_str(), flags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      Status s = ErrnoStatus("fstat", path, errno);
      ::close(fd);
      return s;
    }
    return std::unique_ptr<File>(std::make_unique<PosixFile>(fd, path, S_ISBLK(st.st_mode)));
  }

  Status CreateDir(const std::string& path) override {
    if (path.empty()) return InvalidArgument("CreateDir: empty path");
    // Create each prefix ending before a '/', then the whole path (mkdir -p).
    for (size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
      std::string prefix = pos == std::string::npos ? path : path.substr(0, pos);
      RETURN_IF_ERROR(MakeOneDir(prefix));
      if (pos == std::string::npos) break;
    }
    return Status::Ok();
  }

  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) return ErrnoStatus("opendir", path, errno);
    std::vector<std::string> names;
    for (;;) {
      errno = 0;
      struct dirent* e = ::readdir(dir);
      if (e == nullptr) break;
      std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      names.emplace_back(name);
    }
    int err = errno;
    ::closedir(dir);
    if (err != 0) return ErrnoStatus("readdir", path, err);
    std::sort(names.begin(), names.end());
    return names;
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoStatus("unlink", path, errno);
    return Status::Ok();
  }

  Status RemoveDir(const std::string& path) override {
    if (::rmdir(path.c_str()) != 0) return ErrnoStatus("rmdir", path, errno);
    return Status::Ok();
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoStatus("rename", from + " -> " + to, errno);
    }
    return Status::Ok();
  }

  Status SyncDir(const std::string& path) override {
    int fd;
    do {
      fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return ErrnoStatus("open dir", path, errno);
    Status s;
    while (::fsync(fd) != 0) {
      if (errno != EINTR) {
        s = ErrnoStatus("fsync dir", path, errno);
        break;
      }
    }
    ::close(fd);
    return s;
  }

  bool Exists(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }

  Result<SpaceInfo> GetSpace(const std::string& path) override {
    struct statvfs sv;
    int r;
    do {
      r = ::statvfs(path.c_str(), &sv);
    } while (r != 0 && errno == EINTR);
    if (r != 0) return ErrnoStatus("statvfs", path, errno);
    SpaceInfo info;
    info.total_bytes = static_cast<uint64_t>(sv.f_blocks) * sv.f_frsize;
    info.free_bytes = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
    return info;
  }

 private:
  static Status MakeOneDir(const std::string& path) {
    if (::mkdir(path.c_str(), 0755) == 0) return Status::Ok();
    int err = errno;
    if (err == EEXIST) {
      struct stat st;
      if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return Status::Ok();
      return AlreadyExists("mkdir " + path + ": exists and is not a directory");
    }
    return ErrnoStatus("mkdir", path, err);
  }
};

}  // namespace

Env* Env::Posix() {
  static Env* const env = new PosixEnv();  // never destroyed: usable from static destructors
  return env;
}

}  // namespace ferry
