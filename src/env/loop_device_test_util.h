// Test helper: a loop device over a file, standing in for the block device a protected
// machine's disk usually is. Attaching needs root and a free loop device; without them Attach
// says why (kFailedPrecondition) and the test should skip with that message. The device is
// detached when the LoopDevice is destroyed (a failure to detach fails the test). Test-only;
// not thread-safe.
#pragma once

#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "base/status.h"

namespace ferry::test {

class LoopDevice {
 public:
  // backing: an existing file; the device has its size.
  static Result<std::unique_ptr<LoopDevice>> Attach(const std::string& backing) {
    if (::geteuid() != 0) return FailedPrecondition("attaching a loop device needs root");
    const std::string cmd = "losetup -f --show " + backing + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return FailedPrecondition("cannot run losetup");
    std::string out;
    char line[256];
    while (::fgets(line, sizeof line, p) != nullptr) out += line;
    const int status = ::pclose(p);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    if (status != 0 || out.rfind("/dev/", 0) != 0) {
      return FailedPrecondition("cannot attach a loop device: " + out);
    }
    return std::unique_ptr<LoopDevice>(new LoopDevice(out));
  }
  ~LoopDevice() {
    if (std::system(("losetup -d " + path_).c_str()) != 0) ADD_FAILURE() << "could not detach " << path_;
  }
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;

  const std::string& path() const { return path_; }

 private:
  explicit LoopDevice(std::string path) : path_(std::move(path)) {}
  const std::string path_;
};

}  // namespace ferry::test
