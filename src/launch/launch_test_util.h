// Helpers for the launchers' tests: a scratch directory under /tmp (short: unix socket paths
// must fit 107 bytes) removed at the end, and small file writers.
#pragma once

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "env/scratch_dir_test_util.h"

namespace ferry::launch::testing {

class TempDir : public ferry::test::ScratchDir {
 public:
  TempDir() : ScratchDir("ferry-launch-test", "/tmp") {}
};

inline void WriteText(const std::string& path, const std::string& text, bool executable = false) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  if (executable) ::chmod(path.c_str(), 0755);
}

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace ferry::launch::testing
