#include "node/machines.h"

#include <filesystem>
#include <regex>

#include "base/clock.h"
#include "env/env.h"
#include "launch/qmp_power.h"
#include "node/hooks.h"

namespace ferry::node {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr char kExternalFile[] = "external.json";

Status CheckMachineName(const std::string& name) {
  static const std::regex kName("[A-Za-z0-9][A-Za-z0-9._-]{0,62}");
  if (!std::regex_match(name, kName)) {
    return InvalidArgument("machine name '" + name +
                           "': use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit");
  }
  return Status::Ok();
}

Result<std::string> Text(const json& body, const char* key, bool required) {
  if (!body.contains(key)) {
    if (required) return InvalidArgument(std::string("field '") + key + "' is missing");
    return std::string();
  }
  if (!body[key].is_string()) return InvalidArgument(std::string("field '") + key + "' must be a string");
  return body[key].get<std::string>();
}

Result<int64_t> Number(const json& body, const char* key, int64_t def, int64_t lo, int64_t hi) {
  if (!body.contains(key)) return def;
  if (!body[key].is_number_integer()) return InvalidArgument(std::string("field '") + key + "' must be an integer");
  int64_t v = body[key].get<int64_t>();
  if (v < lo || v > hi) {
    return InvalidArgument(std::string("field '") + key + "' is " + std::to_string(v) + ": use " + std::to_string(lo) +
                           " to " + std::to_string(hi));
  }
  return v;
}

std::string FormatNs(int64_t ns) { return ns > 0 ? FormatTime(ns) : std::string(); }

}  // namespace

Machines::Machines(const NodeConfig& config, std::unique_ptr<launch::Launcher> launcher)
    : config_(config), launcher_(std::move(launcher)) {}

Result<std::unique_ptr<Machines>> Machines::Open(const NodeConfig& config) {
  ASSIGN_OR_RETURN(auto launcher, launch::MakeLauncher(config.launcher));
  std::unique_ptr<Machines> m(new Machines(config, std::move(launcher)));
  std::error_code ec;
  fs::create_directories(m->Dir(""), ec);
  if (ec) return IoError("cannot create " + m->Dir("") + ": " + ec.message());
  for (const auto& d : fs::directory_iterator(m->Dir(""), ec)) {
    if (d.is_directory()) m->Find(d.path().filename().string(), true);
  }
  return m;
}

Machines::~Machines() {
  std::vector<std::shared_ptr<Entry>> all;
  {
    std::lock_guard l(mu_);
    for (auto& [n, e] : entries_) all.push_back(e);
  }
  for (auto& e : all) {
    std::lock_guard l(e->mu);
    if (e->stopper.joinable()) e->stopper.join();
  }
}

std::string Machines::Dir(const std::string& name) const {
  return (fs::path(config_.data_dir) / "machines" / name).string();
}

std::shared_ptr<Machines::Entry> Machines::Find(const std::string& name, bool create) {
  std::lock_guard l(mu_);
  auto it = entries_.find(name);
  if (it != entries_.end()) return it->second;
  if (!create) return nullptr;
  auto e = std::make_shared<Entry>();
  entries_[name] = e;
  return e;
}

json Machines::Summary() {
  json machines = json::array();
  std::vector<std::pair<std::string, std::shared_ptr<Entry>>> all;
  {
    std::lock_guard l(mu_);
    for (auto& [n, e] : entries_) all.emplace_back(n, e);
  }
  for (auto& [n, e] : all) {
    std::lock_guard l(e->state_mu);
    const bool ext = fs::exists(fs::path(Dir(n)) / kExternalFile);
    machines.push_back({{"name", n}, {"state", e->stopping ? "Stopping" : e->last_state},
                        {"launcher", ext ? "external" : launcher_->kind()}});
  }
  json networks = json::array();
  for (const auto& [n, spec] : config_.networks) networks.push_back({{"name", n}, {"mode", spec.mode}, {"subnet", spec.subnet}});
  return {{"kind", launcher_->kind()}, {"networks", networks}, {"machines", machines}};
}

Result<launch::MachineSpec> Machines::SpecFrom(const json& body) const {
  if (!body.is_object()) return InvalidArgument("the request body must be a JSON object");
  static const std::vector<std::string> kKnown = {"name",        "disks",       "cpus",   "memory_mib", "network",
                                                  "isolated",    "ip_address",  "mac_address", "kernel", "initrd",
                                                  "cmdline",     "probe"};
  for (const auto& [k, v] : body.items()) {
    if (std::find(kKnown.begin(), kKnown.end(), k) == kKnown.end()) {
      return InvalidArgument("field '" + k + "' is unknown");
    }
  }
  launch::MachineSpec s;
  ASSIGN_OR_RETURN(s.name, Text(body, "name", true));
  RETURN_IF_ERROR(CheckMachineName(s.name));
  if (!body.contains("disks") || !body["disks"].is_array() || body["disks"].empty()) {
    return InvalidArgument("field 'disks' must be a non-empty array of NBD URIs");
  }
  for (const json& d : body["disks"]) {
    if (!d.is_string() || d.get<std::string>().rfind("nbd", 0) != 0) {
      return InvalidArgument("field 'disks' must hold NBD URIs (nbd://… or nbd+unix://…)");
    }
    s.disks.push_back(d.get<std::string>());
  }
  ASSIGN_OR_RETURN(s.cpus, Number(body, "cpus", 1, 1, 64));
  ASSIGN_OR_RETURN(s.memory_mib, Number(body, "memory_mib", 512, 64, 1 << 20));
  ASSIGN_OR_RETURN(std::string network, Text(body, "network", false));
  if (network.empty()) network = "default";
  auto net = config_.networks.find(network);
  if (net == config_.networks.end()) {
    std::string have;
    for (const auto& [n, _] : config_.networks) have += (have.empty() ? "" : ", ") + n;
    return FailedPrecondition("network '" + network + "' is not defined at site " + config_.site + " (node " +
                              config_.name + " has: " + have + "); add [networks." + network +
                              "] to its config or change the item's network");
  }
  s.network = net->second;
  if (body.contains("isolated")) {
    if (!body["isolated"].is_boolean()) return InvalidArgument("field 'isolated' must be true or false");
    if (body["isolated"].get<bool>() && s.network.mode != "none") {
      s.network.mode = "isolated";
      s.network.name = network + "-isolated";
    }
  }
  ASSIGN_OR_RETURN(s.ip_address, Text(body, "ip_address", false));
  ASSIGN_OR_RETURN(s.mac_address, Text(body, "mac_address", false));
  ASSIGN_OR_RETURN(s.kernel, Text(body, "kernel", false));
  ASSIGN_OR_RETURN(s.initrd, Text(body, "initrd", false));
  ASSIGN_OR_RETURN(s.cmdline, Text(body, "cmdline", false));
  if (body.contains("probe")) {
    const json& p = body["probe"];
    if (!p.is_object()) return InvalidArgument("field 'probe' must be an object {\"tcp_port\", \"console\"}");
    ASSIGN_OR_RETURN(int64_t port, Number(p, "tcp_port", 0, 0, 65535));
    s.tcp_port = static_cast<int>(port);
    ASSIGN_OR_RETURN(s.console_regex, Text(p, "console", false));
    if (!s.console_regex.empty()) {
      try {
        std::regex check(s.console_regex, std::regex::extended);
      } catch (const std::regex_error& e) {
        return InvalidArgument("field 'probe.console' is not a regular expression: " + std::string(e.what()));
      }
    }
  }
  return s;
}

Result<json> Machines::Launch(const json& body) {
  ASSIGN_OR_RETURN(launch::MachineSpec spec, SpecFrom(body));
  auto e = Find(spec.name, true);
  std::lock_guard l(e->mu);
  if (std::lock_guard sl(e->state_mu); e->stopping) {
    return FailedPrecondition("machine " + spec.name + " is being stopped; wait until it is Stopped, then start it");
  }
  if (e->stopper.joinable()) e->stopper.join();
  if (fs::exists(fs::path(Dir(spec.name)) / kExternalFile)) {
    return AlreadyExists("machine " + spec.name + " is an adopted machine on this node; remove it first");
  }
  RETURN_IF_ERROR(launcher_->Start(spec, Dir(spec.name)));
  return Describe(spec.name, *e);
}

Result<json> Machines::Adopt(const json& body) {
  if (!body.is_object()) return InvalidArgument("the request body must be a JSON object");
  ASSIGN_OR_RETURN(std::string name, Text(body, "name", true));
  RETURN_IF_ERROR(CheckMachineName(name));
  ASSIGN_OR_RETURN(std::string qmp, Text(body, "qmp", false));
  ASSIGN_OR_RETURN(std::string command, Text(body, "stop_command", false));
  if (qmp.empty() == command.empty()) {
    return InvalidArgument("give exactly one of 'qmp' (the QMP socket of a QEMU machine) or 'stop_command' "
                           "(a command that powers the machine off)");
  }
  if (!qmp.empty() && qmp[0] != '/') return InvalidArgument("field 'qmp' must be an absolute path of a unix socket");
  auto e = Find(name, true);
  std::lock_guard l(e->mu);
  const std::string dir = Dir(name);
  if (fs::exists(fs::path(dir) / "spec.json")) {
    return AlreadyExists("machine " + name + " was launched by this node; it needs no adoption");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError("cannot create " + dir + ": " + ec.message());
  const json external = {{"qmp", qmp}, {"stop_command", command}};
  RETURN_IF_ERROR(WriteFileAtomically(Env::Posix(), JoinPath(dir, kExternalFile), external.dump(2) + "\n"));
  return Describe(name, *e);
}

Result<json> Machines::External(const std::string& name) {
  const std::string path = JoinPath(Dir(name), kExternalFile);
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(Env::Posix(), path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return DataLoss(path + " is not JSON");
  return j;
}

Result<json> Machines::Describe(const std::string& name, Entry& e) {
  json out = {{"name", name}};
  {
    std::lock_guard sl(e.state_mu);
    if (!e.stop_error.empty()) out["stop_error"] = e.stop_error;
    if (e.stopping) {  // the stopper owns the machine until it is done: do not ask it now
      out["state"] = "Stopping";
      out["probe_ok"] = false;
      return out;
    }
  }
  auto ext = External(name);
  if (ext.ok()) {
    out["launcher"] = "external";
    std::string state = "Unknown", detail;
    if (!(*ext).value("qmp", "").empty()) {
      auto run = launch::QmpRunState((*ext)["qmp"].get<std::string>());
      if (run.ok()) {
        state = *run == "running" ? "Running" : "Starting";
        detail = "QMP status " + *run;
      } else {
        state = "Stopped";
        detail = "its QMP socket does not answer: " + std::string(run.status().message());
      }
    } else {
      std::lock_guard sl(e.state_mu);
      state = e.last_state == "Stopped" ? "Stopped" : "Unknown";
      detail = "a physical or external machine: only its stop command is known";
    }
    {
      std::lock_guard sl(e.state_mu);
      e.last_state = state;
    }
    out["state"] = state;
    out["detail"] = detail;
    out["probe_ok"] = false;
  } else {
    out["launcher"] = launcher_->kind();
    auto st = launcher_->Status(Dir(name));
    if (!st.ok()) {
      if (st.status().code() == Code::kNotFound) return NotFound("no machine " + name + " on node " + config_.name);
      return st.status();
    }
    {
      std::lock_guard sl(e.state_mu);
      e.last_state = launch::PowerStateName(st->state);
    }
    out["state"] = launch::PowerStateName(st->state);
    out["detail"] = st->detail;
    out["probe_ok"] = st->probe_ok;
    out["probe_detail"] = st->probe_detail;
    out["probe_address"] = st->probe_address;
    out["accelerator"] = st->accelerator;
    out["started_at"] = FormatNs(st->started_ns);
    out["running_at"] = FormatNs(st->running_ns);
    out["started_ns"] = st->started_ns;
    out["running_ns"] = st->running_ns;
  }
  return out;
}

Result<json> Machines::Get(const std::string& name) {
  auto e = Find(name, false);
  if (!e) return NotFound("no machine " + name + " on node " + config_.name);
  std::unique_lock l(e->mu, std::try_to_lock);
  if (!l.owns_lock()) {  // being launched or removed right now
    std::lock_guard sl(e->state_mu);
    return json{{"name", name}, {"state", e->stopping ? "Stopping" : "Busy"}, {"probe_ok", false}};
  }
  return Describe(name, *e);
}

json Machines::List() {
  std::vector<std::string> names;
  {
    std::lock_guard l(mu_);
    for (auto& [n, e] : entries_) names.push_back(n);
  }
  json out = json::array();
  for (const auto& n : names) {
    auto m = Get(n);
    if (m.ok()) out.push_back(*m);
  }
  return out;
}

Result<json> Machines::Stop(const std::string& name, bool graceful, int64_t timeout_ms) {
  auto e = Find(name, false);
  if (!e) return NotFound("no machine " + name + " on node " + config_.name);
  std::lock_guard l(e->mu);
  bool already;
  {
    std::lock_guard sl(e->state_mu);
    already = e->stopping;
  }
  if (!already) {
    if (e->stopper.joinable()) e->stopper.join();
    auto ext = External(name);
    if (!ext.ok() && ext.status().code() != Code::kNotFound) return ext.status();
    {
      std::lock_guard sl(e->state_mu);
      e->stopping = true;
      e->stop_error.clear();
    }
    const std::string dir = Dir(name);
    json external = ext.ok() ? *ext : json();
    const int64_t hook_timeout = config_.launcher.command_timeout_ms;
    e->stopper = std::thread([this, e, dir, external, graceful, timeout_ms, hook_timeout] {
      Status s;
      if (external.is_object() && !external.value("qmp", "").empty()) {
        s = launch::QmpPowerOff(external["qmp"].get<std::string>(), graceful, timeout_ms);
      } else if (external.is_object()) {
        std::string output;
        s = RunHook(external.value("stop_command", ""), {{"FERRY_MACHINE_DIR", dir}},
                    std::max<int64_t>(timeout_ms, hook_timeout), &output);
      } else {
        s = launcher_->Stop(dir, graceful, timeout_ms);
      }
      std::lock_guard sl(e->state_mu);
      e->stop_error = s.ok() ? "" : s.ToString();
      e->last_state = s.ok() ? "Stopped" : e->last_state;
      e->stopping = false;
    });
  }
  return json{{"name", name}, {"state", "Stopping"}};
}

Status Machines::Remove(const std::string& name) {
  auto e = Find(name, false);
  if (!e) return Status::Ok();
  {
    std::lock_guard l(e->mu);
    if (e->stopper.joinable()) e->stopper.join();
    if (fs::exists(fs::path(Dir(name)) / kExternalFile)) {
      std::error_code ec;
      fs::remove_all(Dir(name), ec);
      if (ec) return IoError("cannot remove " + Dir(name) + ": " + ec.message());
    } else {
      RETURN_IF_ERROR(launcher_->Remove(Dir(name)));
    }
  }
  std::lock_guard l(mu_);
  entries_.erase(name);
  return Status::Ok();
}

Result<json> Machines::Console(const std::string& name, int64_t offset, int64_t max_bytes) {
  auto e = Find(name, false);
  if (!e) return NotFound("no machine " + name + " on node " + config_.name);
  if (fs::exists(fs::path(Dir(name)) / kExternalFile)) {
    return FailedPrecondition("machine " + name + " was not started by this node: its console is not captured here");
  }
  int64_t next = offset;
  ASSIGN_OR_RETURN(std::string text, launcher_->Console(Dir(name), offset, max_bytes, &next));
  return json{{"name", name}, {"offset", offset}, {"next", next}, {"text", text}};
}

}  // namespace ferry::node
