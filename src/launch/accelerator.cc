#include "launch/accelerator.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ferry::launch {

bool KvmUsable(std::string* why) {
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
  return true;
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
