// Which accelerator QEMU runs a machine with. KVM only when it really works here: /dev/kvm
// opens read-write AND answers KVM_GET_API_VERSION (a container may show the node without
// the permission, or a kernel without the module) AND QEMU starts a paused machine with it
// and the host's CPU (some hosts, nested ones, answer the ioctls but refuse the vCPU's MSRs,
// and QEMU aborts); else TCG, the software emulator, which is slower by one to two orders of
// magnitude but always there.
// Thread-safe. Errors: kInvalidArgument for a setting other than auto|kvm|tcg;
// kFailedPrecondition when kvm is demanded but not usable (the message says why).
#pragma once

#include <string>

#include "base/status.h"

namespace ferry::launch {

// Probes /dev/kvm and, when qemu_binary is given, QEMU with it (once per binary and process:
// the answer is kept); *why says what failed when it returns false.
bool KvmUsable(std::string* why, const std::string& qemu_binary = "");

// The accelerator for a configured setting: "auto" -> kvm if kvm_usable else tcg; "kvm"
// requires kvm_usable; "tcg" always tcg. Pure, for tests.
Result<std::string> ChooseAccelerator(const std::string& configured, bool kvm_usable, const std::string& why_not);

}  // namespace ferry::launch
