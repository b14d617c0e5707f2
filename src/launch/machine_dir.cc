#include "launch/machine_dir.h"

#include <algorithm>
#include <filesystem>

namespace ferry::launch {

namespace {

constexpr int kRecordVersion = 1;

// Reads field `key` of j into *out when present; kInvalidArgument naming it on a wrong type.
template <typename T>
Status Field(const nlohmann::json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return InvalidArgument(std::string("spec field '") + key + "' must be a string");
  } else if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer()) return InvalidArgument(std::string("spec field '") + key + "' must be an integer");
  } else {
    if (!it->is_array()) return InvalidArgument(std::string("spec field '") + key + "' must be an array");
    for (const auto& e : *it) {
      if (!e.is_string()) return InvalidArgument(std::string("spec field '") + key + "' must hold strings");
    }
  }
  *out = it->get<T>();
  return Status::Ok();
}

}  // namespace

nlohmann::json SpecToJson(const MachineSpec& s) {
  return {{"name", s.name},
          {"disks", s.disks},
          {"cpus", s.cpus},
          {"memory_mib", s.memory_mib},
          {"network",
           {{"name", s.network.name}, {"mode", s.network.mode}, {"bridge", s.network.bridge}, {"subnet", s.network.subnet}}},
          {"ip_address", s.ip_address},
          {"mac_address", s.mac_address},
          {"kernel", s.kernel},
          {"initrd", s.initrd},
          {"cmdline", s.cmdline},
          {"tcp_port", s.tcp_port},
          {"console_regex", s.console_regex}};
}

Result<MachineSpec> SpecFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return InvalidArgument("a machine spec must be a JSON object");
  MachineSpec s;
  RETURN_IF_ERROR(Field(j, "name", &s.name));
  RETURN_IF_ERROR(Field(j, "disks", &s.disks));
  RETURN_IF_ERROR(Field(j, "cpus", &s.cpus));
  RETURN_IF_ERROR(Field(j, "memory_mib", &s.memory_mib));
  if (auto n = j.find("network"); n != j.end() && !n->is_null()) {
    if (!n->is_object()) return InvalidArgument("spec field 'network' must be an object");
    RETURN_IF_ERROR(Field(*n, "name", &s.network.name));
    RETURN_IF_ERROR(Field(*n, "mode", &s.network.mode));
    RETURN_IF_ERROR(Field(*n, "bridge", &s.network.bridge));
    RETURN_IF_ERROR(Field(*n, "subnet", &s.network.subnet));
  }
  RETURN_IF_ERROR(Field(j, "ip_address", &s.ip_address));
  RETURN_IF_ERROR(Field(j, "mac_address", &s.mac_address));
  RETURN_IF_ERROR(Field(j, "kernel", &s.kernel));
  RETURN_IF_ERROR(Field(j, "initrd", &s.initrd));
  RETURN_IF_ERROR(Field(j, "cmdline", &s.cmdline));
  RETURN_IF_ERROR(Field(j, "tcp_port", &s.tcp_port));
  RETURN_IF_ERROR(Field(j, "console_regex", &s.console_regex));
  return s;
}

Status WriteRecord(Env* env, const std::string& dir, const MachineRecord& r) {
  nlohmann::json j = {{"version", kRecordVersion}, {"kind", r.kind},         {"spec", SpecToJson(r.spec)},
                      {"accelerator", r.accelerator}, {"host_port", r.host_port}, {"started_ns", r.started_ns},
                      {"stopped_ns", r.stopped_ns},   {"failure", r.failure}};
  return WriteFileAtomically(env, JoinPath(dir, "spec.json"), j.dump(2) + "\n");
}

Result<MachineRecord> ReadRecord(Env* env, const std::string& dir) {
  const std::string path = JoinPath(dir, "spec.json");
  auto text = ReadFileToString(env, path);
  if (!text.ok()) {
    if (text.status().code() == Code::kNotFound) return NotFound("no machine in " + dir + " (no spec.json)");
    return text.status();
  }
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return DataLoss(path + ": not a JSON object");
  if (j.value("version", 0) != kRecordVersion) {
    return DataLoss(path + ": unknown version " + j.value("version", nlohmann::json(0)).dump() + " (this build reads 1)");
  }
  MachineRecord r;
  auto spec = SpecFromJson(j.value("spec", nlohmann::json::object()));
  if (!spec.ok()) return DataLoss(path + ": " + std::string(spec.status().message()));
  r.spec = *spec;
  Status s = Field(j, "kind", &r.kind);
  if (s.ok()) s = Field(j, "accelerator", &r.accelerator);
  if (s.ok()) s = Field(j, "host_port", &r.host_port);
  if (s.ok()) s = Field(j, "started_ns", &r.started_ns);
  if (s.ok()) s = Field(j, "stopped_ns", &r.stopped_ns);
  if (s.ok()) s = Field(j, "failure", &r.failure);
  if (!s.ok()) return DataLoss(path + ": " + std::string(s.message()));
  return r;
}

Result<int64_t> NoteRunning(Env* env, const std::string& dir, int64_t now_ns) {
  if (int64_t since = RunningSince(env, dir); since > 0) return since;
  RETURN_IF_ERROR(WriteFileAtomically(env, JoinPath(dir, "running_ns"), std::to_string(now_ns) + "\n"));
  return now_ns;
}

Status ClearRunning(Env* env, const std::string& dir) {
  Status s = env->RemoveFile(JoinPath(dir, "running_ns"));
  return s.code() == Code::kNotFound ? Status::Ok() : s;
}

int64_t RunningSince(Env* env, const std::string& dir) {
  auto text = ReadFileToString(env, JoinPath(dir, "running_ns"));
  if (!text.ok()) return 0;
  try {
    return std::max<int64_t>(std::stoll(*text), 0);
  } catch (...) {
    return 0;
  }
}

Status AppendConsole(Env* env, const std::string& dir, std::string_view text) {
  ASSIGN_OR_RETURN(auto file, env->OpenFile(JoinPath(dir, "console.log"), OpenMode::kCreate));
  ASSIGN_OR_RETURN(uint64_t size, file->Size());
  return file->WriteAt(size, text);
}

Result<std::string> ReadConsole(Env* env, const std::string& dir, int64_t offset, int64_t max_bytes, int64_t* next) {
  if (!env->Exists(dir)) return NotFound("no machine directory " + dir);
  if (offset < 0 || max_bytes < 0) return InvalidArgument("console offset and length must not be negative");
  *next = offset;
  auto file = env->OpenFile(JoinPath(dir, "console.log"), OpenMode::kRead);
  if (!file.ok()) {
    if (file.status().code() != Code::kNotFound) return file.status();
    if (offset > 0) return OutOfRange("console offset " + std::to_string(offset) + " is past its end (0 bytes)");
    return std::string();
  }
  ASSIGN_OR_RETURN(uint64_t size, (*file)->Size());
  if (static_cast<uint64_t>(offset) > size) {
    return OutOfRange("console offset " + std::to_string(offset) + " is past its end (" + std::to_string(size) +
                      " bytes; the console restarts with each launch)");
  }
  const size_t n = static_cast<size_t>(std::min<uint64_t>(size - static_cast<uint64_t>(offset), static_cast<uint64_t>(max_bytes)));
  std::string out(n, '\0');
  ASSIGN_OR_RETURN(size_t got, (*file)->ReadAt(static_cast<uint64_t>(offset), n, out.data()));
  out.resize(got);
  *next = offset + static_cast<int64_t>(got);
  return out;
}

std::string TailLines(Env* env, const std::string& path, int max_lines) {
  auto file = env->OpenFile(path, OpenMode::kRead);
  if (!file.ok()) return "";
  auto size = (*file)->Size();
  if (!size.ok()) return "";
  const uint64_t want = std::min<uint64_t>(*size, 4096);
  std::string text(want, '\0');
  auto got = (*file)->ReadAt(*size - want, want, text.data());
  if (!got.ok()) return "";
  text.resize(*got);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  size_t pos = text.size();
  for (int i = 0; i < max_lines && pos != std::string::npos && pos > 0; ++i) pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos || pos == 0 ? text : text.substr(pos + 1);
}

Status RemoveTree(Env* env, const std::string& dir) {
  auto names = env->ListDir(dir);
  if (!names.ok()) return names.status().code() == Code::kNotFound ? Status::Ok() : names.status();
  for (const auto& name : *names) {
    const std::string path = JoinPath(dir, name);
    if (!env->RemoveFile(path).ok()) RETURN_IF_ERROR(RemoveTree(env, path));
  }
  Status s = env->RemoveDir(dir);
  return s.code() == Code::kNotFound ? Status::Ok() : s;
}

std::string AbsoluteDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(dir, ec);
  if (ec) p = dir;
  std::string s = p.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace ferry::launch
