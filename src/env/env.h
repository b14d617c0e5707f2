// Env: the only door to the operating system's files. Everything that persists data in
// Ferry (journal segments, base images, overlays, manifests) goes through an Env, so tests
// can run the same code on an in-memory disk that loses unsynced writes (SimEnv) and
// production runs on POSIX files (PosixEnv).
//
// Durability contract (the one real Linux filesystems give, and SimEnv enforces):
//   - Data written with File::WriteAt is durable only after File::Sync returns ok.
//   - A created, renamed or removed directory entry is durable only after Env::SyncDir of
//     the directory that holds it returns ok.
//   - Env::Rename atomically replaces the destination.
// After a crash, unsynced data may be lost wholly or in part, and the last unsynced write
// may be torn (a prefix of it persisted).
//
// Thread-safety: Env and File methods may be called from several threads at once; ReadAt
// and WriteAt on disjoint ranges of one File are safe concurrently.
//
// Errors: kNotFound (no such file or directory), kAlreadyExists (kCreateNew on an existing
// file), kResourceExhausted (no space left), kAborted (SimEnv crashed since this File was
// opened; reopen), kIoError (anything else the OS reported; the message has errno text).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace ferry {

// Offsets, sizes and buffers that File::WriteDurable can write directly are multiples of this.
inline constexpr size_t kDirectIoAlignment = 4096;

// Whether File::WriteDurable can write data at offset directly: offset, data's address and
// its size are multiples of kDirectIoAlignment.
inline bool IsDirectWritable(uint64_t offset, std::string_view data) {
  return offset % kDirectIoAlignment == 0 && data.size() % kDirectIoAlignment == 0 &&
         reinterpret_cast<uintptr_t>(data.data()) % kDirectIoAlignment == 0 && !data.empty();
}

// Memory for File::WriteDurable's direct writes: aligned to kDirectIoAlignment, grown on
// demand and reused.
class DirectBuffer {
 public:
  DirectBuffer() = default;
  DirectBuffer(const DirectBuffer&) = delete;
  DirectBuffer& operator=(const DirectBuffer&) = delete;
  ~DirectBuffer();
  // At least n bytes; what they hold is undefined.
  char* Reserve(size_t n);

 private:
  char* data_ = nullptr;
  size_t capacity_ = 0;
};

// File::ReadAtMapped reads at most kMappedReadMax bytes through a mapping, cached or not;
// up to kMappedCachedReadMax bytes through it when the pages are cached; larger reads, and
// reads of that size whose pages are not all cached, with ReadAt.
inline constexpr size_t kMappedReadMax = 16 * 1024;
inline constexpr size_t kMappedCachedReadMax = 256 * 1024;

class File {
 public:
  virtual ~File() = default;

  // Reads up to n bytes at offset into dst. Returns the number read: fewer than n only at
  // end of file. Holes read as zeros.
  virtual Result<size_t> ReadAt(uint64_t offset, size_t n, void* dst) = 0;
  // Reads like ReadAt; a small read (kMappedReadMax above) goes through a read-only memory
  // mapping of the file where there can be one (a regular file on PosixEnv): a memory copy,
  // no system call, once the pages are cached. For files read many times in small,
  // scattered pieces (journal segments and base images under views). A page not cached is
  // read alone, without read-ahead. A larger read goes through the mapping only when all its
  // pages are cached (one mincore call to know); otherwise, and for the largest reads, it is
  // ReadAt, where the kernel's read-ahead serves a file read in order. Writes through this
  // File or any other are seen as ReadAt would see them. Where the mapping cannot supply the
  // bytes (the file was cut short under it, or the device failed to read them) the result is
  // kIoError, not a crash.
  virtual Result<size_t> ReadAtMapped(uint64_t offset, size_t n, void* dst) {
    return ReadAt(offset, n, dst);
  }
  // Writes all of data at offset, extending the file if needed.
  virtual Status WriteAt(uint64_t offset, std::string_view data) = 0;
  // Writes the pieces back to back starting at offset, as one request where the OS allows.
  virtual Status WriteAtV(uint64_t offset, std::span<const std::string_view> pieces) = 0;
  // Makes everything written so far durable (fdatasync).
  virtual Status Sync() = 0;
  // Writes data at offset and makes it durable before returning: for these bytes, what
  // WriteAt then Sync promise. Where offset, data's address and its size are multiples of
  // kDirectIoAlignment, a POSIX file writes them with direct I/O and O_DSYNC: no copy into
  // the page cache, no writeback of the file's other unsynced data, one request the device
  // completes durably (the journal's synced appends, docs/decisions/0014). Everywhere else (unaligned
  // data, a filesystem that refuses direct I/O, SimEnv), it is WriteAt then Sync.
  virtual Status WriteDurable(uint64_t offset, std::string_view data);
  // A hint, no promise: starts writing [offset, offset+n) back to the device now, without
  // waiting, so that a later Sync has less to wait for and the device stays busy while the
  // caller goes on (a bulk copy that syncs now and then). Durability still needs Sync.
  virtual void StartWriteback(uint64_t /*offset*/, uint64_t /*n*/) {}
  // A hint, no promise: the caller will not read [offset, offset+n) soon; its clean cached
  // pages may be dropped (a bulk copy should not fill the page cache with what it wrote).
  virtual void DropCache(uint64_t /*offset*/, uint64_t /*n*/) {}
  // The file's size; a block device's capacity.
  virtual Result<uint64_t> Size() = 0;
  // Sets the file's size; growing makes a hole. A block device's size is fixed: asking for
  // any other size is kFailedPrecondition.
  virtual Status Truncate(uint64_t size) = 0;
  // After return, [offset, offset+n) reads as zeros and, where the filesystem or device can,
  // takes no space. The file's size does not change. Durable after Sync like a write.
  virtual Status PunchHole(uint64_t offset, uint64_t n) = 0;
  // After return, [offset, offset+n) reads as zeros and stays allocated: later writes there
  // need no new space (NBD's NO_HOLE). The file's size does not change. Durable after Sync
  // like a write. By default zeros are written over the part inside the file.
  virtual Status ZeroRange(uint64_t offset, uint64_t n);
  // First offset >= offset that may hold data (not a hole), or Size() when none.
  // May be conservative (return offset itself) where holes cannot be detected; a block
  // device is data throughout.
  virtual Result<uint64_t> NextData(uint64_t offset) = 0;
};

// An exclusive lock on a path, held until destroyed (or the process dies).
class FileLock {
 public:
  virtual ~FileLock() = default;
};

enum class OpenMode {
  kRead,       // existing file, read-only
  kReadWrite,  // existing file
  kCreate,     // read-write, created empty if missing
  kCreateNew,  // read-write, must not exist yet
};

struct SpaceInfo {
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  // available to this process
};

class Env {
 public:
  virtual ~Env() = default;

  virtual Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) = 0;
  // Creates the directory (and missing parents). Ok if it exists.
  virtual Status CreateDir(const std::string& path) = 0;
  // Names (not paths) of the entries in the directory, sorted.
  virtual Result<std::vector<std::string>> ListDir(const std::string& path) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // Removes an empty directory.
  virtual Status RemoveDir(const std::string& path) = 0;
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status SyncDir(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
  virtual Result<SpaceInfo> GetSpace(const std::string& path) = 0;
  // Takes an exclusive, non-blocking lock on path (created if missing). kFailedPrecondition
  // if another holder has it.
  virtual Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;

  // The process-wide POSIX environment.
  static Env* Posix();
};

// Helpers built only on the interface above.

// Reads a whole file.
Result<std::string> ReadFileToString(Env* env, const std::string& path);
// Replaces path with contents atomically and durably: write path.tmp, sync, rename, sync dir.
Status WriteFileAtomically(Env* env, const std::string& path, std::string_view contents);
// "a/b" + "c" -> "a/b/c"; DirName("a/b/c") -> "a/b".
std::string JoinPath(std::string_view dir, std::string_view name);
std::string DirName(std::string_view path);

}  // namespace ferry
