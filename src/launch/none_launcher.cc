#include "launch/none_launcher.h"

#include "launch/machine_dir.h"
#include "launch/machine_spec.h"

namespace ferry::launch {

ferry::Status NoneLauncher::Start(const MachineSpec& spec, const std::string& dir_in) {
  const std::string dir = AbsoluteDir(dir_in);
  RETURN_IF_ERROR(ValidateSpec(spec));
  if (auto rec = ReadRecord(env_, dir); rec.ok() && rec->stopped_ns == 0) return ferry::Status::Ok();
  RETURN_IF_ERROR(env_->CreateDir(dir));
  MachineRecord rec;
  rec.spec = spec;
  rec.kind = kind();
  rec.started_ns = clock_->NowNanos();
  return WriteRecord(env_, dir, rec);
}

Result<MachineStatus> NoneLauncher::Status(const std::string& dir_in) {
  ASSIGN_OR_RETURN(MachineRecord rec, ReadRecord(env_, AbsoluteDir(dir_in)));
  MachineStatus st;
  st.started_ns = rec.started_ns;
  if (rec.stopped_ns != 0) {
    st.state = PowerState::kStopped;
    st.detail = "launcher none: stopped";
    st.probe_detail = "not running";
    return st;
  }
  st.state = PowerState::kRunning;
  st.detail = "launcher none: nothing was started";
  st.probe_ok = true;
  st.probe_detail = "launcher none: the disks are exported, nothing was started";
  st.running_ns = rec.started_ns;
  return st;
}

ferry::Status NoneLauncher::Stop(const std::string& dir_in, bool graceful, int64_t timeout_ms) {
  const std::string dir = AbsoluteDir(dir_in);
  auto rec = ReadRecord(env_, dir);
  if (!rec.ok()) return rec.status().code() == Code::kNotFound ? ferry::Status::Ok() : rec.status();
  if (rec->stopped_ns != 0) return ferry::Status::Ok();
  rec->stopped_ns = clock_->NowNanos();
  return WriteRecord(env_, dir, *rec);
}

ferry::Status NoneLauncher::Remove(const std::string& dir) { return RemoveTree(env_, AbsoluteDir(dir)); }

Result<std::string> NoneLauncher::Console(const std::string& dir, int64_t offset, int64_t max_bytes, int64_t* next) {
  return ReadConsole(env_, AbsoluteDir(dir), offset, max_bytes, next);
}

}  // namespace ferry::launch
