#include "cli/tables.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "base/clock.h"
#include "cli/api_json.h"
#include "cli/format.h"

namespace ferry::cli {

namespace {

std::string Scalar(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {  // a reference or a problem: {"message"} or {"id"} say the most
    if (v.contains("message") && v["message"].is_string()) return v["message"].get<std::string>();
    if (v.contains("id") && v["id"].is_string()) return v["id"].get<std::string>();
  }
  return v.dump();
}

std::string WithUnit(const json& object, const char* key, const char* unit) {
  std::string t = Text(object, key);
  return t == "-" ? t : t + unit;
}

std::string Bytes(const json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0)
             ? HumanBytes(v.get<uint64_t>())
             : "-";
}

// The mean initial-sync percentage over the disks that report one.
std::optional<double> InitialSyncPercent(const json& item) {
  double sum = 0;
  int n = 0;
  const json& disks = Field(item, "disks");
  if (!disks.is_array()) return std::nullopt;
  for (const json& d : disks) {
    const json& p = Field(Field(d, "initial_sync"), "percent");
    if (!p.is_number()) continue;
    sum += p.get<double>();
    ++n;
  }
  if (n == 0) return std::nullopt;
  return sum / n;
}

std::string WithTable(std::string text, const Table& table, const char* title) {
  if (table.rows.empty()) return text;
  return text + "\n" + title + ":\n" + table.Format();
}

}  // namespace

std::string Table::Format() const { return FormatTable(header, rows); }

std::string Text(const json& object, const char* key) {
  const json& v = Field(object, key);
  if (!v.is_array()) return Scalar(v);
  if (v.empty()) return "-";
  std::string out;
  for (const json& e : v) out += (out.empty() ? "" : ", ") + Scalar(e);
  return out;
}

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0)) return "-";
  char buf[32];
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
    return buf;
  }
  auto s = static_cast<int64_t>(std::llround(seconds));
  if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600));
  }
  return buf;
}

std::string FormatSeconds(const json& seconds) {
  return seconds.is_number() ? FormatDuration(seconds.get<double>()) : "-";
}

std::string FormatPercent(const json& percent) {
  if (!percent.is_number()) return "-";
  double p = percent.get<double>();
  char buf[32];
  if (p == std::floor(p)) {
    std::snprintf(buf, sizeof buf, "%.0f%%", p);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f%%", p);
  }
  return buf;
}

std::optional<double> SecondsBetween(const json& from, const json& to) {
  int64_t a, b;
  if (!from.is_string() || !to.is_string() || !ParseTime(from.get<std::string>(), &a) ||
      !ParseTime(to.get<std::string>(), &b)) {
    return std::nullopt;
  }
  return static_cast<double>(b - a) / kNanosPerSecond;
}

std::string KeyValues(const std::vector<std::pair<std::string, std::string>>& lines) {
  size_t width = 0;
  for (const auto& [k, v] : lines) width = std::max(width, k.size());
  std::string out;
  for (const auto& [k, v] : lines) out += k + ":" + std::string(width - k.size() + 1, ' ') + v + "\n";
  return out;
}

std::string JobTarget(const json& job) {
  const json& t = Field(job, "target");
  if (t.is_string()) return t.get<std::string>();
  std::string name = Text(t, "name");
  return name != "-" && !name.empty() ? name : Text(t, "id");
}

Table SitesTable(const json& items) {
  Table t{{"ID", "NAME", "CREATED"}, {}};
  for (const json& s : items) t.rows.push_back({Text(s, "id"), Text(s, "name"), Text(s, "created_at")});
  return t;
}

Table NodesTable(const json& items) {
  Table t{{"ID", "NAME", "SITE", "HEALTH", "LAST-HEARTBEAT", "API-URL"}, {}};
  for (const json& n : items) {
    t.rows.push_back({Text(n, "id"), Text(n, "name"), Text(n, "site"), Text(n, "health"),
                      Text(n, "last_heartbeat_at"), Text(n, "api_url")});
  }
  return t;
}

Table PoliciesTable(const json& items) {
  Table t{{"ID", "NAME", "RPO-THRESHOLD", "RETENTION", "APP-INTERVAL", "CRASH-INTERVAL", "FAILBACK"}, {}};
  for (const json& p : items) {
    t.rows.push_back({Text(p, "id"), Text(p, "name"), WithUnit(p, "rpo_threshold_seconds", "s"),
                      WithUnit(p, "retention_hours", "h"),
                      WithUnit(p, "app_consistent_interval_seconds", "s"),
                      WithUnit(p, "crash_consistent_interval_seconds", "s"), Text(p, "failback_policy")});
  }
  return t;
}

Table MachinesTable(const json& items) {
  Table t{{"ID", "NAME", "SITE", "NODE", "DISKS"}, {}};
  for (const json& m : items) {
    std::string disks;
    const json& ds = Field(m, "disks");
    if (ds.is_array()) {
      for (const json& d : ds) disks += (disks.empty() ? "" : ",") + Text(d, "name");
    }
    t.rows.push_back(
        {Text(m, "id"), Text(m, "name"), Text(m, "site"), Text(m, "node"), disks.empty() ? "-" : disks});
  }
  return t;
}

Table ItemsTable(const json& items) {
  Table t{{"ID", "NAME", "STATE", "HEALTH", "RPO", "DIRECTION", "ACTIVE-SITE", "JOB"}, {}};
  for (const json& i : items) {
    std::string state = Text(i, "state");
    if (auto p = InitialSyncPercent(i); p && state == "InitialSync") state += " " + FormatPercent(*p);
    t.rows.push_back({Text(i, "id"), Text(i, "name"), state, Text(i, "health"),
                      FormatSeconds(Field(i, "rpo_seconds")), Text(i, "direction"), Text(i, "active_site"),
                      Text(i, "active_job")});
  }
  return t;
}

Table JobsTable(const json& items) {
  Table t{{"ID", "TYPE", "TARGET", "STATE", "PROGRESS", "STARTED"}, {}};
  for (const json& j : items) {
    std::string state = Text(j, "state");
    if (Field(j, "cancel_requested") == true && state == "InProgress") state += " (cancelling)";
    t.rows.push_back({Text(j, "id"), Text(j, "type"), JobTarget(j), state,
                      FormatPercent(Field(j, "progress")), Text(j, "started_at")});
  }
  return t;
}

Table RecoveryPointsTable(const json& items) {
  Table t{{"ID", "TIME", "KIND", "LABEL"}, {}};
  for (const json& p : items) {
    std::string label = Text(p, "label");
    t.rows.push_back({Text(p, "id"), Text(p, "time"), Text(p, "kind"), label.empty() ? "-" : label});
  }
  return t;
}

Table StepsTable(const json& job) {
  Table t{{"STEP", "STATE", "DURATION", "MESSAGE"}, {}};
  const json& steps = Field(job, "steps");
  if (!steps.is_array()) return t;
  for (const json& s : steps) {
    std::string title = Text(s, "title");
    if (title == "-" || title.empty()) title = Text(s, "name");
    auto secs = SecondsBetween(Field(s, "started_at"), Field(s, "ended_at"));
    std::string message = Text(s, "message");
    t.rows.push_back(
        {title, Text(s, "state"), secs ? FormatDuration(*secs) : "-", message == "-" ? "" : message});
  }
  return t;
}

std::string SiteDetails(const json& site) {
  return KeyValues(
      {{"id", Text(site, "id")}, {"name", Text(site, "name")}, {"created", Text(site, "created_at")}});
}

std::string NodeDetails(const json& node) {
  return KeyValues({{"id", Text(node, "id")},
                    {"name", Text(node, "name")},
                    {"site", Text(node, "site")},
                    {"health", Text(node, "health")},
                    {"problems", Text(node, "problems")},
                    {"last heartbeat", Text(node, "last_heartbeat_at")},
                    {"api url", Text(node, "api_url")},
                    {"link address", Text(node, "link_address")},
                    {"nbd", Text(node, "nbd")}});
}

std::string PolicyDetails(const json& policy) {
  return KeyValues({{"id", Text(policy, "id")},
                    {"name", Text(policy, "name")},
                    {"rpo threshold", WithUnit(policy, "rpo_threshold_seconds", "s")},
                    {"retention", WithUnit(policy, "retention_hours", "h")},
                    {"app-consistent every", WithUnit(policy, "app_consistent_interval_seconds", "s")},
                    {"crash-consistent every", WithUnit(policy, "crash_consistent_interval_seconds", "s")},
                    {"failback policy", Text(policy, "failback_policy")}});
}

std::string MachineDetails(const json& machine) {
  Table disks{{"NAME", "PATH", "SIZE"}, {}};
  const json& ds = Field(machine, "disks");
  if (ds.is_array()) {
    for (const json& d : ds)
      disks.rows.push_back({Text(d, "name"), Text(d, "path"), Bytes(Field(d, "size"))});
  }
  return WithTable(KeyValues({{"id", Text(machine, "id")},
                              {"name", Text(machine, "name")},
                              {"site", Text(machine, "site")},
                              {"node", Text(machine, "node")}}),
                   disks, "disks");
}

std::string ItemDetails(const json& item) {
  const json& props = Field(item, "properties");
  const json& test = Field(item, "last_test_failover");
  std::string last_test = "-";
  if (test.is_object()) {
    last_test = Text(test, "at") + " (" + Text(test, "job") + ")";
    if (std::string notes = Text(test, "notes"); notes != "-" && !notes.empty()) last_test += ": " + notes;
  }
  const json& failover = Field(item, "failover");
  std::string failed_over = failover.is_object() ? "at point " + Text(failover, "point") : "-";
  std::string state = Text(item, "state");
  if (auto p = InitialSyncPercent(item); p && state == "InitialSync") state += " " + FormatPercent(*p);
  std::string text = KeyValues({
      {"id", Text(item, "id")},
      {"name", Text(item, "name")},
      {"machine", Text(item, "machine")},
      {"state", state},
      {"health", Text(item, "health")},
      {"problems", Text(item, "problems")},
      {"direction", Text(item, "direction")},
      {"active site", Text(item, "active_site")},
      {"replication", Text(item, "source_site") + " (" + Text(item, "source_node") + ") -> " +
                          Text(item, "target_site") + " (" + Text(item, "target_node") + ")"},
      {"policy", Text(item, "policy")},
      {"consistency group", Text(item, "consistency_group")},
      {"rpo", FormatSeconds(Field(item, "rpo_seconds"))},
      {"allowed operations", Text(item, "allowed_operations")},
      {"target name", Text(props, "target_name")},
      {"cpus", Text(props, "cpus")},
      {"memory", WithUnit(props, "memory_mib", " MiB")},
      {"network", Text(props, "network")},
      {"ip address", Text(props, "ip_address") == "" ? "-" : Text(props, "ip_address")},
      {"last test failover", last_test},
      {"failed over", failed_over},
      {"active job", Text(item, "active_job")},
      {"created", Text(item, "created_at")},
      {"updated", Text(item, "updated_at")},
  });
  Table disks{{"NAME", "VOLUME", "SIZE", "INITIAL-SYNC", "PENDING", "RPO", "URI"}, {}};
  const json& ds = Field(item, "disks");
  if (ds.is_array()) {
    for (const json& d : ds) {
      const json& sync = Field(d, "initial_sync");
      std::string sync_text = FormatPercent(Field(sync, "percent"));
      if (const json& eta = Field(sync, "eta_seconds"); eta.is_number()) {
        sync_text += " (eta " + FormatSeconds(eta) + ")";
      }
      std::string uri = Text(d, "uri");
      disks.rows.push_back({Text(d, "name"), Text(d, "volume"), Bytes(Field(d, "size")), sync_text,
                            Bytes(Field(d, "pending_bytes")), FormatSeconds(Field(d, "rpo_seconds")),
                            uri.empty() ? "-" : uri});
    }
  }
  return WithTable(std::move(text), disks, "disks");
}

std::string JobDetails(const json& job) {
  const json& error = Field(job, "error");
  std::vector<std::pair<std::string, std::string>> lines = {
      {"id", Text(job, "id")},
      {"type", Text(job, "type")},
      {"target", JobTarget(job)},
      {"state", Text(job, "state")},
      {"progress", FormatPercent(Field(job, "progress"))},
      {"cancel requested", Field(job, "cancel_requested") == true ? "yes" : "no"},
      {"allowed actions", Text(job, "allowed_actions")},
      {"created", Text(job, "created_at")},
      {"started", Text(job, "started_at")},
      {"ended", Text(job, "ended_at")},
  };
  if (auto secs = SecondsBetween(Field(job, "started_at"), Field(job, "ended_at"))) {
    lines.push_back({"duration", FormatDuration(*secs)});
  }
  if (error.is_object()) {
    lines.push_back({"error", Text(error, "code") + ": " + Text(error, "message")});
    if (std::string action = Text(error, "action"); action != "-" && !action.empty()) {
      lines.push_back({"action", action});
    }
  }
  return WithTable(KeyValues(lines), StepsTable(job), "steps");
}

}  // namespace ferry::cli
