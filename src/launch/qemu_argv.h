// The QEMU command line for a machine: a pure function of the site's launcher config, the
// spec, the machine directory and what the launcher chose at start (accelerator, forwarded
// host port), so it is tested without QEMU. docs/launchers.md explains each part.
//
//   -name NAME -nodefaults -no-user-config -machine pc -accel kvm -cpu host | -accel tcg
//   -smp CPUS -m MEMORY -display none -serial file:DIR/console.log
//   -qmp unix:DIR/qmp.sock,server=on,wait=off -pidfile DIR/qemu.pid [-bios FIRMWARE]
//   -drive file=URI,file.reconnect-delay=60,format=raw,if=virtio,cache=none ...  (boot disk first)
//   network: user      -netdev user,id=n0,net=SUBNET[,dhcpstart=IP][,hostfwd=tcp:127.0.0.1:H-[IP]:PORT]
//                      -device virtio-net-pci,netdev=n0,mac=MAC,romfile=
//            isolated  the same with restrict=on (no way out; the forwarded port still works)
//            bridge    -netdev bridge,id=n0,br=BRIDGE -device virtio-net-pci,... (qemu-bridge-helper)
//            none      -nic none
//   [-kernel KERNEL [-initrd INITRD] -append CMDLINE]
// romfile= (empty): no iPXE option ROM; recovered machines boot from their disks.
//
// Errors: kInvalidArgument for a spec QEMU cannot run (ValidateSpec's, plus: no disk and no
// kernel; initrd or cmdline without kernel; a tcp probe on network mode none, or on a bridge
// without ip_address; a directory path with ',' or too long for the QMP socket).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "launch/launcher.h"

namespace ferry::launch {

// How long QEMU waits for a disk's NBD server to come back (a node restart) before it fails
// the machine's I/O.
constexpr int kNbdReconnectSeconds = 60;

// The files of a qemu machine directory.
inline constexpr const char* kConsoleFile = "console.log";
inline constexpr const char* kQmpSocket = "qmp.sock";
inline constexpr const char* kQemuPidFile = "qemu.pid";
inline constexpr const char* kQemuLogFile = "qemu.log";

// accel: "kvm" or "tcg". host_fwd_port: the host port forwarded to spec.tcp_port on user and
// isolated networks (ignored otherwise and when spec.tcp_port is 0).
Result<std::vector<std::string>> QemuArgv(const LauncherConfig& config, const MachineSpec& spec, const std::string& dir,
                                          const std::string& accel, int host_fwd_port);

// Where the tcp probe connects: "127.0.0.1:H" on user/isolated networks, "IP:PORT" on a
// bridge, "" without a tcp probe.
std::string QemuProbeAddress(const MachineSpec& spec, int host_fwd_port);

// Whether the network forwards a host port to the machine (user or isolated with tcp_port).
bool NeedsHostForward(const MachineSpec& spec);

}  // namespace ferry::launch
