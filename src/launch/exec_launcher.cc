#include "launch/exec_launcher.h"

#include "env/process.h"
#include "launch/exec_template.h"
#include "launch/machine_spec.h"
#include "launch/probe.h"

namespace ferry::launch {

namespace {

constexpr int kStatusRunning = 0, kStatusStopped = 3;

}  // namespace

Result<ExecLauncher::Outcome> ExecLauncher::Run(const std::string& what, const std::string& tmpl, const MachineSpec& spec,
                                                const std::string& dir, const std::map<std::string, std::string>& extra_env,
                                                int64_t timeout_ms) {
  ASSIGN_OR_RETURN(std::string command, ExpandTemplate(what, tmpl, spec, dir));
  auto env = TemplateEnvironment(spec, dir);
  env.insert(extra_env.begin(), extra_env.end());
  ASSIGN_OR_RETURN(CommandResult r, RunCommand(command, env, timeout_ms));
  RETURN_IF_ERROR(AppendConsole(env_, dir, r.output));
  Outcome o;
  o.exit_code = r.timed_out ? -1 : r.exit_code;
  o.summary = what + " " + r.Describe(timeout_ms) + (r.output.empty() ? "" : ": " + r.OutputTail());
  while (!o.summary.empty() && (o.summary.back() == '\n' || o.summary.back() == '\r')) o.summary.pop_back();
  return o;
}

ferry::Status ExecLauncher::Start(const MachineSpec& spec, const std::string& dir_in) {
  const std::string dir = AbsoluteDir(dir_in);
  RETURN_IF_ERROR(ValidateSpec(spec));
  // Expand every template now: a bad {diskN} fails before anything runs.
  for (const auto& [what, tmpl] : {std::pair{"launcher.start_command", &config_.start_command},
                                   std::pair{"launcher.status_command", &config_.status_command},
                                   std::pair{"launcher.stop_command", &config_.stop_command}}) {
    RETURN_IF_ERROR(ExpandTemplate(what, *tmpl, spec, dir).status());
  }
  if (auto rec = ReadRecord(env_, dir); rec.ok() && rec->stopped_ns == 0 && rec->failure.empty()) {
    ASSIGN_OR_RETURN(MachineStatus now, PowerStatus(*rec, dir));
    if (now.state == PowerState::kRunning) return ferry::Status::Ok();  // idempotent
  }
  RETURN_IF_ERROR(env_->CreateDir(dir));
  // A new launch: a new console (the probe must not match the last launch's lines).
  RETURN_IF_ERROR(WriteFileAtomically(env_, JoinPath(dir, "console.log"), ""));
  RETURN_IF_ERROR(ClearRunning(env_, dir));
  MachineRecord rec;
  rec.spec = spec;
  rec.kind = kind();
  rec.started_ns = clock_->NowNanos();
  RETURN_IF_ERROR(WriteRecord(env_, dir, rec));
  ASSIGN_OR_RETURN(Outcome o, Run("start command", config_.start_command, spec, dir, {{"FERRY_ACTION", "start"}},
                                  config_.command_timeout_ms));
  if (o.exit_code == 0) return ferry::Status::Ok();
  rec.failure = o.summary;
  RETURN_IF_ERROR(WriteRecord(env_, dir, rec));
  return IoError("machine " + spec.name + ": " + o.summary);
}

Result<MachineStatus> ExecLauncher::PowerStatus(const MachineRecord& rec, const std::string& dir) {
  MachineStatus st;
  st.started_ns = rec.started_ns;
  st.running_ns = RunningSince(env_, dir);
  if (rec.spec.tcp_port > 0 && !rec.spec.ip_address.empty()) {
    st.probe_address = rec.spec.ip_address + ":" + std::to_string(rec.spec.tcp_port);
  }
  st.probe_detail = "not running";
  if (!rec.failure.empty()) {
    st.state = PowerState::kFailed;
    st.detail = rec.failure;
    return st;
  }
  if (rec.stopped_ns != 0) {
    st.state = PowerState::kStopped;
    st.detail = "stopped by the stop command";
    return st;
  }
  if (config_.status_command.empty()) {
    st.state = PowerState::kRunning;
    st.detail = "started (no status command: counts as running until stopped)";
    return st;
  }
  ASSIGN_OR_RETURN(Outcome o, Run("status command", config_.status_command, rec.spec, dir, {{"FERRY_ACTION", "status"}},
                                  config_.command_timeout_ms));
  st.state = o.exit_code == kStatusRunning   ? PowerState::kRunning
             : o.exit_code == kStatusStopped ? PowerState::kStopped
                                             : PowerState::kUnknown;
  st.detail = o.summary;
  return st;
}

Result<MachineStatus> ExecLauncher::Status(const std::string& dir_in) {
  const std::string dir = AbsoluteDir(dir_in);
  ASSIGN_OR_RETURN(MachineRecord rec, ReadRecord(env_, dir));
  ASSIGN_OR_RETURN(MachineStatus st, PowerStatus(rec, dir));
  if (st.state != PowerState::kRunning) return st;
  ProbeResult probe = RunProbe(env_, {JoinPath(dir, "console.log"), rec.spec.console_regex, rec.spec.tcp_port, st.probe_address});
  st.probe_ok = probe.ok;
  st.probe_detail = probe.detail;
  if (probe.ok) {
    ASSIGN_OR_RETURN(st.running_ns, NoteRunning(env_, dir, clock_->NowNanos()));
  }
  return st;
}

ferry::Status ExecLauncher::Stop(const std::string& dir_in, bool graceful, int64_t timeout_ms) {
  const std::string dir = AbsoluteDir(dir_in);
  auto rec = ReadRecord(env_, dir);
  if (!rec.ok()) return rec.status().code() == Code::kNotFound ? ferry::Status::Ok() : rec.status();
  if (rec->stopped_ns != 0 || !rec->failure.empty()) return ferry::Status::Ok();  // nothing runs
  if (config_.stop_command.empty()) {
    return FailedPrecondition("machine " + rec->spec.name +
                              ": the exec launcher has no stop_command; stop the machine by hand, then remove it");
  }
  timeout_ms = std::max<int64_t>(timeout_ms, 0);
  ASSIGN_OR_RETURN(Outcome o, Run("stop command", config_.stop_command, rec->spec, dir,
                                  {{"FERRY_ACTION", "stop"}, {"FERRY_GRACEFUL", graceful ? "1" : "0"},
                                   {"FERRY_TIMEOUT_MS", std::to_string(timeout_ms)}},
                                  config_.command_timeout_ms + timeout_ms));
  if (o.exit_code != 0) return IoError("machine " + rec->spec.name + ": " + o.summary);
  rec->stopped_ns = clock_->NowNanos();
  return WriteRecord(env_, dir, *rec);
}

ferry::Status ExecLauncher::Remove(const std::string& dir_in) {
  const std::string dir = AbsoluteDir(dir_in);
  auto rec = ReadRecord(env_, dir);
  if (rec.ok()) {
    ferry::Status s = Stop(dir, /*graceful=*/false, 0);
    if (!s.ok()) {
      // Without a stop command, only a machine the status command reports stopped may go.
      ASSIGN_OR_RETURN(MachineStatus st, PowerStatus(*rec, dir));
      if (st.state != PowerState::kStopped) return s;
    }
  } else if (rec.status().code() != Code::kNotFound) {
    return rec.status();
  }
  return RemoveTree(env_, dir);
}

Result<std::string> ExecLauncher::Console(const std::string& dir, int64_t offset, int64_t max_bytes, int64_t* next) {
  return ReadConsole(env_, AbsoluteDir(dir), offset, max_bytes, next);
}

}  // namespace ferry::launch
