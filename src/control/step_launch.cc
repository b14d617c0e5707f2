#include "control/step_launch.h"

#include <algorithm>
#include <sstream>

namespace ferry::control::steps {

namespace {

Result<json> MachineRun(JobContext& c, const ItemRecord& item) {
  ASSIGN_OR_RETURN(json m, c.ctl().inventory().MachineById(c.ctl().db(), item.machine_id));
  json run = m.value("run", json::object());
  run["machine_name"] = m["name"];
  return run;
}

// The last lines of a machine's console, for an error message.
std::string ConsoleTail(const NodeClient& node, const std::string& name, size_t lines) {
  auto r = node.Get("/v1/machines/" + name + "/console?offset=0&limit=1048576");
  if (!r.ok()) return "(console unavailable: " + std::string(r.status().message()) + ")";
  std::string text = (*r).value("text", "");
  std::vector<std::string> all;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += "\n  | " + all[i];
  return out.empty() ? " (the console is empty)" : out;
}

std::string Seconds(int64_t ns) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f", static_cast<double>(ns) / 1e9);
  return buf;
}

}  // namespace

Result<std::string> LaunchName(JobContext& c, const ItemRecord& item, bool test) {
  std::string name;
  if (item.direction == "reverse") {
    ASSIGN_OR_RETURN(json run, MachineRun(c, item));
    name = run["machine_name"].get<std::string>();
  } else {
    name = item.properties.value("target_name", item.name);
  }
  return test ? name + "-test" : name;
}

StepOutcome LaunchStep(JobContext& c, bool test) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(json run, MachineRun(c, it));
  STEP_ASSIGN(std::string name, LaunchName(c, it, test));
  json disks = json::array();
  for (const json& d : it.disks) {
    std::string uri = c.data().value("uris", json::object()).value(d["volume"].get<std::string>(), "");
    if (uri.empty()) {
      return StepOutcome::Fail(WithAction(Code::kInternal, "disk " + d["name"].get<std::string>() + " has no export",
                                          "retry the job; if it fails again, cancel it"));
    }
    disks.push_back(uri);
  }
  const json& p = it.properties;
  json body = {{"name", name},
               {"disks", disks},
               {"cpus", p.value("cpus", 1)},
               {"memory_mib", p.value("memory_mib", 512)},
               {"network", p.value("network", "default")},
               {"isolated", test},
               {"ip_address", p.value("ip_address", "")}};
  json boot = run.value("boot", json::object());
  for (const char* k : {"kernel", "initrd", "cmdline"}) {
    if (boot.contains(k)) body[k] = boot[k];
  }
  json probe = run.value("probe", json::object());
  body["probe"] = {{"tcp_port", probe.value("tcp_port", 0)}, {"console", probe.value("console", "")}};
  STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
  auto r = dst.Post("/v1/machines", body);
  if (!r.ok()) {
    if (IsCode(r.status(), Code::kUnavailable)) return FromError(r.status());
    return StepOutcome::Fail(WithAction(r.status().code(),
                                        "node " + dst.name() + " could not start machine " + name + ": " +
                                            std::string(r.status().message()),
                                        "fix the item's properties (ferry item update) or the node's [launcher] and "
                                        "[networks], then retry the job; or cancel it"));
  }
  c.data()["machine"] = {{"node", it.target_node}, {"name", name}, {"launch", body}};
  if (!c.data().contains("boot")) c.data()["boot"] = {{"since", c.ctl().clock().NowNanos()}};
  std::string launcher = (*r).value("launcher", "");
  if (launcher == "none") return StepOutcome::Done("launcher none: nothing to start; the disks are exported");
  std::string accel = (*r).value("accelerator", "");
  return StepOutcome::Done("launcher " + launcher + " started " + name + (accel.empty() ? "" : " (" + accel + ")") +
                           (test ? " in an isolated network" : " in network " + p.value("network", "default")));
}

StepOutcome BootStep(JobContext& c) {
  if (!c.data().contains("machine")) return StepOutcome::Done("no machine was launched");
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(json run, MachineRun(c, it));
  const json m = c.data()["machine"];
  const std::string name = m["name"];
  STEP_ASSIGN(NodeClient node, Node(c, m["node"].get<int64_t>()));
  STEP_ASSIGN(json st, node.Get("/v1/machines/" + name));
  if (st.value("launcher", "") == "none") {
    std::string uris;
    const json all = c.data().value("uris", json::object());  // a named copy: items() must not dangle
    for (const auto& [vol, uri] : all.items()) uris += " " + uri.get<std::string>();
    return StepOutcome::Done("launcher none: start the machine from its disks:" + uris);
  }
  const int64_t now = c.ctl().clock().NowNanos();
  json& boot = c.data()["boot"];
  if (!boot.contains("since")) boot["since"] = now;
  const int64_t timeout_s = run.value("probe", json::object()).value("timeout_s", int64_t{600});
  const int64_t elapsed = now - boot["since"].get<int64_t>();
  const std::string state = st.value("state", "Unknown");
  const std::string accel = st.value("accelerator", "");
  if (state == "Running" && st.value("probe_ok", false)) {
    const int64_t started = st.value("started_ns", int64_t{0}), running = st.value("running_ns", int64_t{0});
    const int64_t took = running > started && started > 0 ? running - started : elapsed;
    boot["seconds"] = static_cast<double>(took) / 1e9;
    boot["accelerator"] = accel;
    return StepOutcome::Done(name + " is running" + (accel.empty() ? "" : " (" + accel + ")") + " and answered its probe " +
                             Seconds(took) + " s after launch: " + st.value("probe_detail", ""));
  }
  const std::string action = "read the console (ferry item console " + it.name +
                             "), fix the machine's run settings or the item's properties, then retry the job, or "
                             "cancel it";
  if (state == "Stopped" || state == "Failed") {
    return StepOutcome::Fail(WithAction(Code::kAborted,
                                        name + " stopped while booting (" + st.value("detail", "") +
                                            "); its console ends:" + ConsoleTail(node, name, 8),
                                        action));
  }
  if (elapsed > timeout_s * kNanosPerSecond) {
    return StepOutcome::Fail(WithAction(Code::kAborted,
                                        name + " did not pass its probe within " + std::to_string(timeout_s) + " s (" +
                                            st.value("probe_detail", state) + "); its console ends:" +
                                            ConsoleTail(node, name, 8),
                                        action));
  }
  const double pct = std::min(95.0, 100.0 * static_cast<double>(elapsed) / static_cast<double>(timeout_s * kNanosPerSecond));
  std::string detail = state == "Running" ? st.value("probe_detail", "waiting for the probe") : state;
  return StepOutcome::Wait(name + " " + (accel.empty() ? "" : "(" + accel + ") ") + "booting for " + Seconds(elapsed) +
                               " s: " + detail,
                           pct, 300);
}

namespace {

StepOutcome RemoveOn(JobContext& c, int64_t node_id, const std::string& name) {
  STEP_ASSIGN(NodeClient node, Node(c, node_id));
  auto r = node.Delete("/v1/machines/" + name);
  if (!r.ok() && !IsCode(r.status(), Code::kNotFound)) return FromError(r.status());
  return StepOutcome::Done("removed machine " + name + " from node " + node.name());
}

}  // namespace

StepOutcome RemoveLaunched(JobContext& c) {
  if (!c.data().contains("machine")) return StepOutcome::Done("no machine was launched");
  return RemoveOn(c, c.data()["machine"]["node"].get<int64_t>(), c.data()["machine"]["name"]);
}

StepOutcome RemoveTestMachine(JobContext& c) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  json m = it.test_failover.is_object() ? it.test_failover.value("machine", json()) : json();
  if (!m.is_object()) return StepOutcome::Done("the test failover launched no machine");
  return RemoveOn(c, m["node"].get<int64_t>(), m["name"]);
}

Status RemoveRunning(JobContext& c, const ItemRecord& item) {
  if (!item.running.is_object()) return Status::Ok();
  ASSIGN_OR_RETURN(NodeClient node, Node(c, item.running["node"].get<int64_t>()));
  auto r = node.Delete("/v1/machines/" + item.running["name"].get<std::string>());
  if (!r.ok() && !IsCode(r.status(), Code::kNotFound)) return r.status();
  return Status::Ok();
}

StepOutcome PowerOffSource(JobContext& c) {
  if (!c.spec().value("shutdown_source", false)) return StepOutcome::Done("not asked");
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  const int64_t now = c.ctl().clock().NowNanos();
  if (!c.data().contains("poweroff")) {
    STEP_ASSIGN(json run, MachineRun(c, it));
    json shutdown = run.value("shutdown", json::object());
    std::string name;
    bool adopted = false;
    auto src = Node(c, it.source_node);
    if (!src.ok()) return StepOutcome::Done("the source node is unknown (" + std::string(src.status().message()) + "); going on");
    if (it.running.is_object() && it.running.value("node", int64_t{0}) == it.source_node) {
      name = it.running["name"];
    } else if (!shutdown.value("qmp", "").empty() || !shutdown.value("command", "").empty()) {
      name = run["machine_name"];
      json body = {{"name", name}};
      if (!shutdown.value("qmp", "").empty()) body["qmp"] = shutdown["qmp"];
      else body["stop_command"] = shutdown["command"];
      auto a = src->Post("/v1/machines/adopt", body);
      if (!a.ok() && !IsCode(a.status(), Code::kAlreadyExists)) {
        return StepOutcome::Done("could not reach the source machine " + name + " through node " + src->name() + " (" +
                                 std::string(a.status().message()) + "); going on: its disks are fenced next");
      }
      adopted = a.ok();
    } else {
      return StepOutcome::Done("no way to power the source machine off is set (the machine's run.shutdown); going on: "
                               "its disks are fenced next, so it cannot change them");
    }
    const int64_t timeout_s = shutdown.value("timeout_s", int64_t{60});
    auto r = src->Post("/v1/machines/" + name + "/stop", json{{"graceful", true}, {"timeout_ms", timeout_s * 1000}});
    if (!r.ok()) {
      return StepOutcome::Done("could not power off " + name + " (" + std::string(r.status().message()) +
                               "); going on: its disks are fenced next");
    }
    c.data()["poweroff"] = {{"node", it.source_node}, {"name", name}, {"since", now}, {"timeout_s", timeout_s},
                            {"adopted", adopted}};
    return StepOutcome::Wait("asked " + name + " to power off", 0, 300);
  }
  const json p = c.data()["poweroff"];
  const std::string name = p["name"];
  const int64_t elapsed = now - p["since"].get<int64_t>();
  const int64_t limit_ns = (p["timeout_s"].get<int64_t>() + 15) * kNanosPerSecond;
  auto src = Node(c, p["node"].get<int64_t>());
  if (!src.ok()) return StepOutcome::Done("the source node went away; going on");
  auto st = src->Get("/v1/machines/" + name);
  if (!st.ok()) {
    return StepOutcome::Done("the source node stopped answering (" + std::string(st.status().message()) + "); going on");
  }
  const std::string state = (*st).value("state", "");
  if (state == "Stopped") return StepOutcome::Done(name + " powered off after " + Seconds(elapsed) + " s");
  if (state != "Stopping" && (*st).contains("stop_error")) {
    return StepOutcome::Done("powering " + name + " off failed (" + (*st)["stop_error"].get<std::string>() +
                             "); going on: its disks are fenced next");
  }
  if (elapsed > limit_ns) {
    return StepOutcome::Done(name + " did not power off within " + Seconds(elapsed) +
                             " s; going on: its disks are fenced next");
  }
  return StepOutcome::Wait(name + " is powering off (" + state + ", " + Seconds(elapsed) + " s)",
                           std::min(95.0, 100.0 * static_cast<double>(elapsed) / static_cast<double>(limit_ns)), 300);
}

StepOutcome RestartSource(JobContext& c) {
  if (!c.data().contains("poweroff")) return StepOutcome::Done("it was not powered off");
  const json p = c.data()["poweroff"];
  const std::string name = p["name"];
  if (p.value("adopted", false)) {
    return StepOutcome::Done("Ferry powered the source machine " + name +
                             " off; start it again yourself (Ferry did not start it)");
  }
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  if (!it.running.is_object() || !it.running.contains("launch")) {
    return StepOutcome::Done("start the source machine " + name + " again yourself");
  }
  auto src = Node(c, p["node"].get<int64_t>());
  if (!src.ok()) return StepOutcome::Done("the source node is unknown; start " + name + " again when it is back");
  auto r = src->Post("/v1/machines", it.running["launch"]);
  if (!r.ok()) {
    return StepOutcome::Done("could not start " + name + " again (" + std::string(r.status().message()) +
                             "); start it with the node's launcher when the node is back");
  }
  return StepOutcome::Done("started " + name + " again on node " + src->name());
}

json RunningRecord(JobContext& c, const ItemRecord& item) {
  if (!c.data().contains("machine")) return nullptr;
  const json& m = c.data()["machine"];
  auto site = c.ctl().inventory().SiteName(c.ctl().db(), item.target_site);
  return {{"node", m["node"]}, {"name", m["name"]}, {"launch", m["launch"]}, {"site", item.target_site},
          {"site_name", site.ok() ? *site : ""}};
}

}  // namespace ferry::control::steps
