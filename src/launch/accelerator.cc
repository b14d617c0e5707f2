#include "launch/accelerator.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "env/process.h"
#include "launch/exec_template.h"

namespace ferry::launch {

namespace {

// A paused machine with KVM and the host's CPU, told over QMP to quit at once: exit 0 when
// KVM works for QEMU here.
bool QemuRunsKvm(const std::string& qemu_binary, std::string* why) {
  static std::mutex mu;
  static std::map<std::string, std::pair<bool, std::string>> known;
  std::lock_guard l(mu);
  auto it = known.find(qemu_binary);
  if (it == known.end()) {
    const std::string command =
        "printf '%s\\n' '{\"execute\": \"qmp_capabilities\"}' '{\"execute\": \"quit\"}' | " +
        ShellQuote(qemu_binary) +
        " -nodefaults -no-user-config -machine pc -accel kvm -cpu host -m 16 -display none -monitor none"
        " -serial none -S -qmp stdio";
    constexpr int64_t kTimeoutMs = 20'000;
    auto r = RunCommand(command, {}, kTimeoutMs);
    std::string reason;
    if (!r.ok()) {
      reason = "running " + qemu_binary + ": " + r.status().ToString();
    } else if (!r->succeeded()) {
      reason = qemu_binary + " with -accel kvm -cpu host " + r->Describe(kTimeoutMs) + ": " + r->OutputTail();
    }
    it = known.emplace(qemu_binary, std::make_pair(reason.empty(), reason)).first;
  }
  *why = it->second.second;
  return it->second.first;
}

}  // namespace

bool KvmUsable(std::string* why, const std::string& qemu_binary) {
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    *why = std::string("/dev/kvm: ") + std::strerror(errno);
    return false;
  }
  int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
  const int err = errno;
  ::close(fd);
  if (version < 0) {
    *why = std::string("/dev/kvm: KVM_GET_API_VERSION: ") + std::strerror(err);
    return false;
  }
  if (version != KVM_API_VERSION) {
    *why = "/dev/kvm: KVM API version " + std::to_string(version) + ", QEMU needs " + std::to_string(KVM_API_VERSION);
    return false;
  }
  return qemu_binary.empty() || QemuRunsKvm(qemu_binary, why);
}

Result<std::string> ChooseAccelerator(const std::string& configured, bool kvm_usable, const std::string& why_not) {
  if (configured == "tcg") return std::string("tcg");
  if (configured == "auto") return std::string(kvm_usable ? "kvm" : "tcg");
  if (configured == "kvm") {
    if (kvm_usable) return std::string("kvm");
    return FailedPrecondition("accelerator kvm is configured but KVM is not usable here (" + why_not +
                              "); fix /dev/kvm or set accelerator = \"auto\"");
  }
  return InvalidArgument("accelerator '" + configured + "' is unknown: use auto, kvm or tcg");
}

}  // namespace ferry::launch
