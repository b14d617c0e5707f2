#include "launch/qemu_argv.h"

#include <sys/un.h>

#include "env/env.h"
#include "launch/machine_spec.h"

namespace ferry::launch {

namespace {

// QEMU's option syntax: a ',' inside a value is written ",,".
std::string EscapeOpt(const std::string& v) {
  std::string out;
  for (char c : v) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

Status CheckQemuSpec(const MachineSpec& spec, const std::string& dir, const std::string& accel) {
  RETURN_IF_ERROR(ValidateSpec(spec));
  const std::string who = "machine " + spec.name + ": ";
  if (spec.disks.empty() && spec.kernel.empty()) return InvalidArgument(who + "no disk to boot from and no kernel");
  if (spec.kernel.empty() && (!spec.initrd.empty() || !spec.cmdline.empty())) {
    return InvalidArgument(who + "initrd and cmdline need a kernel (direct kernel boot)");
  }
  if (accel != "kvm" && accel != "tcg") return InvalidArgument(who + "accelerator '" + accel + "' is neither kvm nor tcg");
  const std::string& mode = spec.network.mode;
  if (spec.tcp_port > 0 && mode == "none") {
    return InvalidArgument(who + "a tcp probe (tcp_port " + std::to_string(spec.tcp_port) + ") needs a network, but network '" +
                           spec.network.name + "' has mode none");
  }
  if (spec.tcp_port > 0 && mode == "bridge" && spec.ip_address.empty()) {
    return InvalidArgument(who + "a tcp probe on bridge network '" + spec.network.name + "' needs the machine's ip_address");
  }
  if (dir.empty() || dir.find(',') != std::string::npos) {
    return InvalidArgument(who + "machine directory '" + dir + "' is empty or holds a ',' (QEMU options cannot carry it)");
  }
  const size_t max_socket = sizeof(sockaddr_un{}.sun_path) - 1;
  if (JoinPath(dir, kQmpSocket).size() > max_socket) {
    return InvalidArgument(who + "machine directory '" + dir + "' is too long: its QMP socket path must fit in " +
                           std::to_string(max_socket) + " bytes");
  }
  return Status::Ok();
}

}  // namespace

bool NeedsHostForward(const MachineSpec& spec) {
  return spec.tcp_port > 0 && (spec.network.mode == "user" || spec.network.mode == "isolated");
}

std::string QemuProbeAddress(const MachineSpec& spec, int host_fwd_port) {
  if (spec.tcp_port <= 0) return "";
  if (NeedsHostForward(spec)) return host_fwd_port > 0 ? "127.0.0.1:" + std::to_string(host_fwd_port) : "";
  if (spec.network.mode == "bridge" && !spec.ip_address.empty()) return spec.ip_address + ":" + std::to_string(spec.tcp_port);
  return "";
}

Result<std::vector<std::string>> QemuArgv(const LauncherConfig& config, const MachineSpec& spec, const std::string& dir,
                                          const std::string& accel, int host_fwd_port) {
  RETURN_IF_ERROR(CheckQemuSpec(spec, dir, accel));
  if (NeedsHostForward(spec) && (host_fwd_port <= 0 || host_fwd_port > 65535)) {
    return InvalidArgument("machine " + spec.name + ": no host port to forward to tcp_port " + std::to_string(spec.tcp_port));
  }
  std::vector<std::string> a = {config.qemu_binary, "-name", spec.name, "-nodefaults", "-no-user-config", "-machine", "pc",
                                "-accel", accel};
  if (accel == "kvm") a.insert(a.end(), {"-cpu", "host"});
  a.insert(a.end(), {"-smp", std::to_string(spec.cpus), "-m", std::to_string(spec.memory_mib), "-display", "none",
                     "-serial", "file:" + JoinPath(dir, kConsoleFile),
                     "-qmp", "unix:" + JoinPath(dir, kQmpSocket) + ",server=on,wait=off",
                     "-pidfile", JoinPath(dir, kQemuPidFile)});
  if (!config.firmware.empty()) a.insert(a.end(), {"-bios", config.firmware});
  // reconnect-delay: while the node that exports the disks restarts, QEMU holds the
  // machine's I/O and reconnects instead of failing it (the guest sees a slow disk, not errors).
  for (const auto& disk : spec.disks) {
    a.insert(a.end(), {"-drive", "file=" + EscapeOpt(disk) + ",file.reconnect-delay=" +
                                     std::to_string(kNbdReconnectSeconds) + ",format=raw,if=virtio,cache=none"});
  }
  const std::string& mode = spec.network.mode;
  const std::string nic = "virtio-net-pci,netdev=n0,mac=" + MacOf(spec) + ",romfile=";
  if (mode == "user" || mode == "isolated") {
    std::string netdev = "user,id=n0,net=" + SubnetOf(spec.network);
    if (!spec.ip_address.empty()) netdev += ",dhcpstart=" + spec.ip_address;
    if (mode == "isolated") netdev += ",restrict=on";
    if (NeedsHostForward(spec)) {
      netdev += ",hostfwd=tcp:127.0.0.1:" + std::to_string(host_fwd_port) + "-" + spec.ip_address + ":" +
                std::to_string(spec.tcp_port);
    }
    a.insert(a.end(), {"-netdev", netdev, "-device", nic});
  } else if (mode == "bridge") {
    a.insert(a.end(), {"-netdev", "bridge,id=n0,br=" + EscapeOpt(spec.network.bridge), "-device", nic});
  } else {
    a.insert(a.end(), {"-nic", "none"});
  }
  if (!spec.kernel.empty()) {
    a.insert(a.end(), {"-kernel", spec.kernel});
    if (!spec.initrd.empty()) a.insert(a.end(), {"-initrd", spec.initrd});
    a.insert(a.end(), {"-append", spec.cmdline});
  }
  return a;
}

}  // namespace ferry::launch
