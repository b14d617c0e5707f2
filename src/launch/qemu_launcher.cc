#include "launch/qemu_launcher.h"

#include <signal.h>

#include <chrono>
#include <thread>

#include "env/process.h"
#include "env/socket.h"
#include "launch/accelerator.h"
#include "launch/machine_dir.h"
#include "launch/probe.h"
#include "launch/qemu_argv.h"
#include "launch/qmp.h"

namespace ferry::launch {

namespace {

constexpr int64_t kStartWatchMs = 2000;   // Start returns once QMP greets, or after this
constexpr int64_t kQmpTimeoutMs = 2000;   // each QMP read
constexpr int64_t kQuitWaitMs = 2000;     // after `quit`, before SIGKILL
constexpr int64_t kKillWaitMs = 5000;     // after SIGKILL
constexpr int64_t kStartGraceNs = 30 * kNanosPerSecond;  // QMP silent this long after start: Unknown

// Waits until pid is gone or timeout_ms passed; true when gone.
bool WaitGone(int pid, int64_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (ProcessAlive(pid)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

std::string Accel(const std::string& a) { return a == "kvm" ? "KVM" : a == "tcg" ? "TCG" : a; }

// The first line of qemu.log that is an error, not a warning: QEMU writes nothing else there.
std::string QemuError(Env* env, const std::string& dir) {
  std::string tail = TailLines(env, JoinPath(dir, kQemuLogFile), 20);
  std::string last;
  size_t begin = 0;
  while (begin < tail.size()) {
    size_t end = tail.find('\n', begin);
    if (end == std::string::npos) end = tail.size();
    std::string line = tail.substr(begin, end - begin);
    if (!line.empty() && line.find("warning:") == std::string::npos && line.find("terminating on signal") == std::string::npos) {
      last = line;
    }
    begin = end + 1;
  }
  return last;
}

void RemoveIfThere(Env* env, const std::string& path) { (void)env->RemoveFile(path); }

}  // namespace

PowerState PowerStateFromQmp(const std::string& s) {
  if (s == "running") return PowerState::kRunning;
  if (s == "shutdown") return PowerState::kStopped;
  if (s == "io-error" || s == "guest-panicked" || s == "internal-error") return PowerState::kFailed;
  return PowerState::kStarting;  // prelaunch, paused, inmigrate, restore-vm, debug, ...
}

int QemuLauncher::LivePid(const std::string& dir) {
  auto text = ReadFileToString(env_, JoinPath(dir, kQemuPidFile));
  // QEMU truncates its pidfile before it writes the pid (so does Start's fallback, when QEMU
  // is slow to start and writes it after us): an empty file is one being written. Look again
  // briefly rather than report a starting machine as stopped (or leave it running on Stop).
  for (int i = 0; i < 50 && text.ok() && text->empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    text = ReadFileToString(env_, JoinPath(dir, kQemuPidFile));
  }
  if (!text.ok()) return 0;
  int pid = 0;
  try {
    pid = std::stoi(*text);
  } catch (...) {
    return 0;
  }
  if (!ProcessAlive(pid)) return 0;
  // A pid may be reused after QEMU died: it must be the QEMU of this directory.
  auto argv = ProcessCommandLine(pid);
  if (!argv.ok()) return 0;
  const std::string pidfile = JoinPath(dir, kQemuPidFile);
  for (size_t i = 0; i + 1 < argv->size(); ++i) {
    if ((*argv)[i] == "-pidfile" && (*argv)[i + 1] == pidfile) return pid;
  }
  return 0;
}

ferry::Status QemuLauncher::CheckSite(const MachineSpec& spec) {
  auto qemu = FindProgram(config_.qemu_binary);
  if (!qemu.ok()) {
    return FailedPrecondition("QEMU binary: " + std::string(qemu.status().message()) +
                              " (install qemu-system-x86 or set [launcher] qemu_binary)");
  }
  if (!config_.firmware.empty() && !env_->Exists(config_.firmware)) {
    return FailedPrecondition("firmware " + config_.firmware + " does not exist (check [launcher] firmware)");
  }
  if (spec.network.mode == "bridge" && !env_->Exists("/sys/class/net/" + spec.network.bridge)) {
    return FailedPrecondition("network '" + spec.network.name + "': bridge " + spec.network.bridge +
                              " does not exist on this host");
  }
  for (const std::string* f : {&spec.kernel, &spec.initrd}) {
    if (!f->empty() && !env_->Exists(*f)) return InvalidArgument("machine " + spec.name + ": " + *f + " does not exist");
  }
  return ferry::Status::Ok();
}

ferry::Status QemuLauncher::Start(const MachineSpec& spec, const std::string& dir_in) {
  const std::string dir = AbsoluteDir(dir_in);
  std::string why_not;
  const bool kvm = config_.accelerator != "tcg" && KvmUsable(&why_not, config_.qemu_binary);
  ASSIGN_OR_RETURN(std::string accel, ChooseAccelerator(config_.accelerator, kvm, why_not));
  // Validate before anything else, with a stand-in for the port that is chosen later.
  RETURN_IF_ERROR(QemuArgv(config_, spec, dir, accel, 1).status());
  if (LivePid(dir) > 0) return ferry::Status::Ok();  // already running: idempotent
  RETURN_IF_ERROR(CheckSite(spec));

  int host_port = 0;
  if (NeedsHostForward(spec)) {
    // A free port now; QEMU binds it a moment later (a race with other programs we accept).
    ASSIGN_OR_RETURN(auto listener, Listener::Tcp("127.0.0.1", 0));
    host_port = listener->port();
  }
  ASSIGN_OR_RETURN(std::vector<std::string> argv, QemuArgv(config_, spec, dir, accel, host_port));

  RETURN_IF_ERROR(env_->CreateDir(dir));
  const std::string qmp = JoinPath(dir, kQmpSocket), pidfile = JoinPath(dir, kQemuPidFile);
  const std::string log = JoinPath(dir, kQemuLogFile);
  RemoveIfThere(env_, qmp);
  RemoveIfThere(env_, pidfile);
  RemoveIfThere(env_, log);  // this launch's messages only
  RETURN_IF_ERROR(ClearRunning(env_, dir));
  MachineRecord rec;
  rec.spec = spec;
  rec.kind = kind();
  rec.accelerator = accel;
  rec.host_port = host_port;
  rec.started_ns = clock_->NowNanos();
  RETURN_IF_ERROR(WriteRecord(env_, dir, rec));

  // Ready: QMP greets. The socket file appears early in QEMU's start-up, but the greeting
  // comes from its main loop, after the disks were opened: a QEMU that cannot open one exits
  // before it greets, and Start reports why.
  const auto watch_end = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartWatchMs);
  auto greets = [&] {
    if (!env_->Exists(qmp)) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(watch_end - std::chrono::steady_clock::now());
    return QmpClient::Connect(qmp, std::max<int64_t>(left.count(), 50)).ok();
  };
  auto spawned = SpawnDetached(argv, log, kStartWatchMs, greets);
  if (!spawned.ok()) {
    if (spawned.status().code() == Code::kNotFound) return FailedPrecondition(std::string(spawned.status().message()));
    return spawned.status().WithContext("machine " + spec.name + ": starting QEMU");
  }
  if (spawned->exited) {
    std::string how = spawned->exit_code >= 0 ? "with status " + std::to_string(spawned->exit_code)
                                              : "by signal " + std::to_string(spawned->term_signal);
    std::string tail = TailLines(env_, log, 5);
    return IoError("machine " + spec.name + ": QEMU exited at once " + how + (tail.empty() ? "" : ": " + tail));
  }
  // QEMU writes its pidfile before it opens the QMP socket; if it is slower than the watch,
  // write it here so Status and Stop find the process.
  if (!env_->Exists(pidfile)) RETURN_IF_ERROR(WriteFileAtomically(env_, pidfile, std::to_string(spawned->pid) + "\n"));
  return ferry::Status::Ok();
}

Result<MachineStatus> QemuLauncher::Status(const std::string& dir_in) {
  const std::string dir = AbsoluteDir(dir_in);
  ASSIGN_OR_RETURN(MachineRecord rec, ReadRecord(env_, dir));
  MachineStatus st;
  st.accelerator = rec.accelerator;
  st.started_ns = rec.started_ns;
  st.running_ns = RunningSince(env_, dir);
  st.probe_address = QemuProbeAddress(rec.spec, rec.host_port);
  const int pid = LivePid(dir);
  if (pid == 0) {
    const std::string error = QemuError(env_, dir);
    if (st.running_ns == 0 && !error.empty()) {
      st.state = PowerState::kFailed;
      st.detail = "QEMU exited before the machine ran: " + error;
    } else {
      st.state = PowerState::kStopped;
      st.detail = "QEMU is not running" + (error.empty() ? "" : " (its last message: " + error + ")");
    }
    st.probe_detail = "not running";
    return st;
  }
  const std::string who = "QEMU pid " + std::to_string(pid) + ", " + Accel(rec.accelerator);
  auto qmp = QmpClient::Connect(JoinPath(dir, kQmpSocket), kQmpTimeoutMs);
  Result<std::string> qs = qmp.ok() ? (*qmp)->QueryStatus() : Result<std::string>(qmp.status());
  if (!qs.ok()) {
    const bool young = clock_->NowNanos() - rec.started_ns < kStartGraceNs;
    st.state = young ? PowerState::kStarting : PowerState::kUnknown;
    st.detail = who + ", QMP not answering: " + std::string(qs.status().message());
    st.probe_detail = "not running yet";
    return st;
  }
  st.state = PowerStateFromQmp(*qs);
  st.detail = who + ", status " + *qs;
  if (st.state == PowerState::kFailed) st.detail += " (QEMU paused the machine; qemu.log and the console say why)";
  if (st.state != PowerState::kRunning) {
    st.probe_detail = "not running";
    return st;
  }
  ProbeResult probe = RunProbe(env_, {JoinPath(dir, kConsoleFile), rec.spec.console_regex, rec.spec.tcp_port, st.probe_address});
  st.probe_ok = probe.ok;
  st.probe_detail = probe.detail;
  if (probe.ok) {
    ASSIGN_OR_RETURN(st.running_ns, NoteRunning(env_, dir, clock_->NowNanos()));
  }
  return st;
}

ferry::Status QemuLauncher::Stop(const std::string& dir_in, bool graceful, int64_t timeout_ms) {
  const std::string dir = AbsoluteDir(dir_in);
  const std::string qmp_path = JoinPath(dir, kQmpSocket);
  const int pid = LivePid(dir);
  if (pid > 0) {
    auto qmp = QmpClient::Connect(qmp_path, kQmpTimeoutMs);
    bool gone = false;
    if (graceful && qmp.ok() && (*qmp)->SystemPowerdown().ok()) gone = WaitGone(pid, std::max<int64_t>(timeout_ms, 0));
    if (!gone && qmp.ok() && (*qmp)->Quit().ok()) gone = WaitGone(pid, kQuitWaitMs);
    if (!gone) {
      (void)SignalProcess(pid, SIGKILL);
      if (!WaitGone(pid, kKillWaitMs)) return IoError("QEMU pid " + std::to_string(pid) + " survived SIGKILL for 5 s");
    }
  }
  // QEMU removes them on a clean exit, not after SIGKILL.
  RemoveIfThere(env_, qmp_path);
  RemoveIfThere(env_, JoinPath(dir, kQemuPidFile));
  return ferry::Status::Ok();
}

ferry::Status QemuLauncher::Remove(const std::string& dir_in) {
  const std::string dir = AbsoluteDir(dir_in);
  RETURN_IF_ERROR(Stop(dir, /*graceful=*/false, 0));
  return RemoveTree(env_, dir);
}

Result<std::string> QemuLauncher::Console(const std::string& dir, int64_t offset, int64_t max_bytes, int64_t* next) {
  return ReadConsole(env_, AbsoluteDir(dir), offset, max_bytes, next);
}

}  // namespace ferry::launch
