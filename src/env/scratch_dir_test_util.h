// Test helper: a directory of the test's own, made fresh and removed with all it holds when
// the object goes. Test-only.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace ferry::test {

class ScratchDir {
 public:
  // A new directory named `prefix` plus a unique suffix under `parent`: by default gtest's
  // temporary directory ($TEST_TMPDIR, $TMPDIR or /tmp). "/tmp" where paths must stay short (a
  // unix socket's path must fit 107 bytes); "/var/tmp", a real disk where /tmp may be tmpfs,
  // for tests of direct I/O or the page cache. If it cannot be made, the test fails and path()
  // is empty.
  explicit ScratchDir(std::string_view prefix, std::string_view parent = {}) {
    std::string dir = parent.empty() ? ::testing::TempDir() : std::string(parent);
    if (dir.empty() || dir.back() != '/') dir += '/';
    std::string tmpl = dir + std::string(prefix) + ".XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      ADD_FAILURE() << "cannot make a scratch directory " << tmpl << ": " << std::strerror(errno);
      return;
    }
    path_ = std::move(tmpl);
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  // The path of `name` inside the directory.
  std::string operator/(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

}  // namespace ferry::test
