// Launchers start a recovered machine from its disks at a site, report whether it runs, show
// its console and stop it. The node daemon owns one Launcher (chosen by its config) and calls
// it for `POST /v1/machines` and friends (docs/protocols/node-api.md); the control plane's
// failover steps drive those routes. Kinds:
//   qemu  QEMU with the disks attached by NBD URI, KVM when /dev/kvm is usable, else TCG;
//         serial console to a log file; QMP for status and graceful power-off.
//   exec  operator command templates (start / status / stop) for libvirt, bare metal, clouds:
//         placeholders and exit codes in docs/launchers.md.
//   none  starts nothing: the machine "runs" as soon as its disks are exported, and the job
//         reports their URIs.
//
// A machine is identified by its name; its state lives in a directory the caller gives
// (spec.json, console.log, qmp.sock, pid, launcher output), so a restarted node finds the
// machines it launched still running (a QEMU machine is started in a session of its own and
// outlives the node).
//
// Thread-safety: one Launcher may be called from several threads for different machines;
// calls for the same machine must not overlap (the node serialises them).
//
// Implementations: qemu_launcher.h, exec_launcher.h, none_launcher.h; the machine directory's
// files: machine_dir.h; docs/launchers.md for operators.
//
// Errors: kInvalidArgument for a spec the launcher cannot run (names what is wrong);
// kFailedPrecondition when something the site needs is missing (qemu binary, bridge, the
// command template); kIoError when the process could not be started or exited at once
// (message: its exit status and the last lines of its output); kNotFound for an unknown
// machine directory.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace ferry::launch {

// A network as the site defines it (node config [networks.NAME]).
struct NetworkSpec {
  std::string name;          // "default", "prod", ...; "isolated" is always defined
  std::string mode = "user"; // user: QEMU user-mode NAT; bridge: a tap on `bridge`;
                             // isolated: no way out of the machine (test failovers);
                             // none: no network card
  std::string bridge;        // for mode bridge
  std::string subnet;        // user/isolated: CIDR the machine's DHCP hands out from, e.g.
                             // "10.0.2.0/24"; the machine's ip_address must lie inside
};

struct MachineSpec {
  std::string name;                 // [A-Za-z0-9][A-Za-z0-9._-]{0,62}
  std::vector<std::string> disks;   // NBD URIs, boot disk first
  int64_t cpus = 1;
  int64_t memory_mib = 512;
  NetworkSpec network;
  std::string ip_address;           // "" : whatever the network gives
  std::string mac_address;          // "" : derived from the name (stable across launches)
  // Direct kernel boot (qemu only; the exec launcher passes them as placeholders). Empty
  // kernel: the machine boots from its first disk with the firmware.
  std::string kernel, initrd, cmdline;
  // Probe (launch/probe.h): the machine counts as started when the launcher reports it
  // running and, when set, these succeed. tcp_port: a TCP connect to the machine's port (for
  // user-mode networks the launcher forwards a host port to it; see
  // MachineStatus::probe_address) after which the machine must send at least one byte within
  // 1 s: its service must send a banner. console_regex: a POSIX extended regular expression
  // (std::regex::extended) that some line of the console must match.
  int tcp_port = 0;
  std::string console_regex;
};

enum class PowerState { kStarting, kRunning, kStopped, kFailed, kUnknown };
const char* PowerStateName(PowerState s);  // "Starting", "Running", ...

struct MachineStatus {
  PowerState state = PowerState::kUnknown;
  std::string detail;          // one line: "QEMU pid 123, TCG, status running" / why failed
  bool probe_ok = false;       // the probe (if any) succeeded; true when there is none
  std::string probe_detail;    // "console matched 'ferry-guest: ready' at line 12" / why not yet
  std::string probe_address;   // host:port the tcp probe connects to, if any
  std::string accelerator;     // qemu: "kvm" or "tcg"
  int64_t started_ns = 0;      // when Start launched it (clock of the node)
  int64_t running_ns = 0;      // when it was first seen running with its probe ok; 0: not yet
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  virtual std::string kind() const = 0;  // "qemu", "exec", "none"
  // Starts spec in dir (created; an existing machine of the same name there that still runs
  // is kept and Start succeeds: idempotent). Returns once the process started, before it boots.
  virtual ferry::Status Start(const MachineSpec& spec, const std::string& dir) = 0;
  // Current state; also evaluates the probe.
  virtual Result<MachineStatus> Status(const std::string& dir) = 0;
  // graceful: ask the guest to power off (QMP system_powerdown / the stop template) and wait up
  // to timeout_ms, then force it off. !graceful: force at once. Stopping a stopped or unknown
  // machine succeeds. The directory is kept (console log) until Remove.
  virtual ferry::Status Stop(const std::string& dir, bool graceful, int64_t timeout_ms) = 0;
  // Stops at once if needed and deletes the directory.
  virtual ferry::Status Remove(const std::string& dir) = 0;
  // Up to max_bytes of the serial console from offset (the qemu launcher's console.log; the
  // exec launcher's captured output); *next = offset after the returned bytes. The console
  // starts anew with each launch: kOutOfRange for an offset past its end.
  virtual Result<std::string> Console(const std::string& dir, int64_t offset, int64_t max_bytes, int64_t* next) = 0;
};

// Site launcher settings (node config [launcher]).
struct LauncherConfig {
  std::string kind = "qemu";              // qemu | exec | none
  std::string qemu_binary = "qemu-system-x86_64";
  std::string accelerator = "auto";       // auto | kvm | tcg
  std::string firmware;                   // optional -bios file (e.g. qboot.rom for speed)
  // exec: shell command templates (docs/launchers.md lists the placeholders and exit codes).
  std::string start_command, status_command, stop_command;
  int64_t command_timeout_ms = 60000;
};

Result<std::unique_ptr<Launcher>> MakeLauncher(const LauncherConfig& config);

}  // namespace ferry::launch
