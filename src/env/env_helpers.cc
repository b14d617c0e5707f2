// Helpers built only on the Env interface, so they behave the same on PosixEnv and SimEnv.
#include <algorithm>
#include <cstdlib>
#include <new>

#include "env/env.h"

namespace ferry {

DirectBuffer::~DirectBuffer() { std::free(data_); }

char* DirectBuffer::Reserve(size_t n) {
  if (n > capacity_) {
    const size_t rounded = (n + kDirectIoAlignment - 1) / kDirectIoAlignment * kDirectIoAlignment;
    void* p = std::aligned_alloc(kDirectIoAlignment, rounded);
    if (p == nullptr) throw std::bad_alloc();
    std::free(data_);
    data_ = static_cast<char*>(p);
    capacity_ = rounded;
  }
  return data_;
}

Status File::WriteDurable(uint64_t offset, std::string_view data) {
  RETURN_IF_ERROR(WriteAt(offset, data));
  return Sync();
}

Status File::ZeroRange(uint64_t offset, uint64_t n) {
  ASSIGN_OR_RETURN(uint64_t size, Size());
  if (offset >= size) return Status::Ok();
  const uint64_t end = size - offset < n ? size : offset + n;
  static const std::string kZeros(64 * 1024, '\0');
  while (offset < end) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(end - offset, kZeros.size()));
    RETURN_IF_ERROR(WriteAt(offset, std::string_view(kZeros).substr(0, len)));
    offset += len;
  }
  return Status::Ok();
}

Result<std::string> ReadFileToString(Env* env, const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<File> file, env->OpenFile(path, OpenMode::kRead));
  ASSIGN_OR_RETURN(uint64_t size, file->Size());
  std::string out;
  // Size is a hint: read until a short read, so a file that grew meanwhile is read whole.
  size_t chunk = static_cast<size_t>(std::max<uint64_t>(size + 1, 4096));
  for (;;) {
    size_t old = out.size();
    out.resize(old + chunk);
    ASSIGN_OR_RETURN(size_t n, file->ReadAt(old, chunk, out.data() + old));
    out.resize(old + n);
    if (n < chunk) break;
  }
  return out;
}

Status WriteFileAtomically(Env* env, const std::string& path, std::string_view contents) {
  const std::string tmp = path + ".tmp";
  {
    ASSIGN_OR_RETURN(std::unique_ptr<File> file, env->OpenFile(tmp, OpenMode::kCreate));
    RETURN_IF_ERROR(file->Truncate(0));  // a failed earlier attempt may have left bytes
    RETURN_IF_ERROR(file->WriteAt(0, contents));
    RETURN_IF_ERROR(file->Sync());
  }
  RETURN_IF_ERROR(env->Rename(tmp, path));
  return env->SyncDir(DirName(path));
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string out(dir);
  if (out.back() != '/') out += '/';
  out += name;
  return out;
}

// Like POSIX dirname(3): "a/b/c" -> "a/b", "a/b/" -> "a", "c" -> ".", "/c" -> "/".
std::string DirName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  path = path.substr(0, slash);
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path.empty() ? "/" : std::string(path);
}

}  // namespace ferry
