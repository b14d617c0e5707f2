#include "control/schema.h"

namespace ferry::control {

const std::vector<store::Migration>& ControlMigrations() {
  static const std::vector<store::Migration> migrations = {
      {1,
       "inventory, items, jobs, recovery points",
       {
           "CREATE TABLE sites (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
           "created_at TEXT NOT NULL)",
           "CREATE TABLE enrollments (token TEXT PRIMARY KEY, site_id BIGINT NOT NULL "
           "REFERENCES sites(id), expires_ns BIGINT NOT NULL, used BIGINT NOT NULL DEFAULT 0)",
           "CREATE TABLE nodes (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
           "site_id BIGINT NOT NULL REFERENCES sites(id), api_url TEXT NOT NULL, "
           "api_token TEXT NOT NULL, link_address TEXT NOT NULL, nbd TEXT NOT NULL, "
           "secret TEXT NOT NULL, registered_at TEXT NOT NULL, "
           "last_heartbeat_ns BIGINT NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT '{}')",
           "CREATE TABLE policies (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
           "rpo_threshold_s BIGINT NOT NULL, retention_hours BIGINT NOT NULL, "
           "app_interval_s BIGINT NOT NULL, crash_interval_s BIGINT NOT NULL, "
           "failback_policy_id BIGINT, created_at TEXT NOT NULL)",
           "CREATE TABLE machines (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
           "site_id BIGINT NOT NULL REFERENCES sites(id), node_id BIGINT NOT NULL "
           "REFERENCES nodes(id), disks TEXT NOT NULL, created_at TEXT NOT NULL)",
           // source/target describe the current replication direction; home_site is where
           // the machine ran when it was protected.
           "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
           "machine_id BIGINT NOT NULL REFERENCES machines(id), state TEXT NOT NULL, "
           "direction TEXT NOT NULL, active_site_id BIGINT NOT NULL, "
           "source_site_id BIGINT NOT NULL, target_site_id BIGINT NOT NULL, "
           "source_node_id BIGINT NOT NULL, target_node_id BIGINT NOT NULL, "
           "policy_id BIGINT NOT NULL REFERENCES policies(id), health TEXT NOT NULL, "
           "problems TEXT NOT NULL, rpo_seconds DOUBLE PRECISION, properties TEXT NOT NULL, "
           "disks TEXT NOT NULL, live TEXT NOT NULL, failover TEXT, test_failover TEXT, last_test TEXT, "
           "active_job_id BIGINT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
           "CREATE INDEX items_by_state ON items(state, id)",
           "CREATE UNIQUE INDEX items_one_per_machine ON items(machine_id) "
           "WHERE state <> 'Disabled'",
           "CREATE TABLE jobs (id BIGINT PRIMARY KEY, type TEXT NOT NULL, "
           "target_kind TEXT NOT NULL, target_id BIGINT NOT NULL, target_name TEXT NOT NULL, "
           "state TEXT NOT NULL, phase TEXT NOT NULL, progress DOUBLE PRECISION NOT NULL, "
           "cancel_requested BIGINT NOT NULL, spec TEXT NOT NULL, data TEXT NOT NULL, "
           "error TEXT, created_at TEXT NOT NULL, started_at TEXT, ended_at TEXT)",
           "CREATE INDEX jobs_by_target ON jobs(target_kind, target_id, id)",
           "CREATE INDEX jobs_by_state ON jobs(state, id)",
           "CREATE TABLE job_steps (job_id BIGINT NOT NULL REFERENCES jobs(id), "
           "idx BIGINT NOT NULL, phase TEXT NOT NULL, name TEXT NOT NULL, title TEXT NOT NULL, "
           "state TEXT NOT NULL, weight DOUBLE PRECISION NOT NULL, progress DOUBLE PRECISION NOT NULL, "
           "message TEXT NOT NULL, started_at TEXT, ended_at TEXT, PRIMARY KEY (job_id, idx))",
           "CREATE TABLE recovery_points (item_id BIGINT NOT NULL REFERENCES items(id), "
           "seq BIGINT NOT NULL, time_ns BIGINT NOT NULL, kind TEXT NOT NULL, "
           "label TEXT NOT NULL, PRIMARY KEY (item_id, seq))",
           "CREATE INDEX recovery_points_by_time ON recovery_points(item_id, time_ns)",
       }},
      {2,
       "launchers: how a machine runs, the machine an item runs",
       {
           // run: {"boot": {"kernel", "initrd", "cmdline"}, "probe": {"tcp_port", "console",
           // "timeout_s"}, "shutdown": {"qmp" | "command", "timeout_s"}} (docs/launchers.md).
           "ALTER TABLE machines ADD COLUMN run TEXT NOT NULL DEFAULT '{}'",
           // The machine a launcher started for the item at its active site:
           // {"node", "site", "name", "launch": <the launch request>}; NULL when none.
           "ALTER TABLE items ADD COLUMN running TEXT",
       }},
      {3,
       "recovery plans and consistency groups (docs/plans.md)",
       {
           // groups: [{"name", "pre": [action], "post": [action]}], in order.
           "CREATE TABLE plans (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
           "source_site_id BIGINT NOT NULL REFERENCES sites(id), target_site_id BIGINT NOT NULL "
           "REFERENCES sites(id), description TEXT NOT NULL, groups TEXT NOT NULL, "
           "active_job_id BIGINT, last_operation TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
           "CREATE TABLE plan_members (plan_id BIGINT NOT NULL REFERENCES plans(id), "
           "machine_id BIGINT NOT NULL REFERENCES machines(id), group_idx BIGINT NOT NULL, "
           "position BIGINT NOT NULL, PRIMARY KEY (plan_id, machine_id))",
           "CREATE INDEX plan_members_by_machine ON plan_members(machine_id)",
           "CREATE TABLE consistency_groups (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
           "created_at TEXT NOT NULL)",
           "ALTER TABLE items ADD COLUMN consistency_group_id BIGINT",
           // One row per group point taken: members {item_id: seq}, hold_ms the time the
           // barrier held acknowledgements (first hold to last release, as the server saw it).
           "CREATE TABLE group_points (group_id BIGINT NOT NULL REFERENCES consistency_groups(id), "
           "marker_id TEXT NOT NULL, time_ns BIGINT NOT NULL, app_consistent BIGINT NOT NULL, "
           "hold_ms DOUBLE PRECISION NOT NULL, members TEXT NOT NULL, PRIMARY KEY (group_id, marker_id))",
           "CREATE INDEX group_points_by_time ON group_points(group_id, time_ns)",
       }},
  };
  return migrations;
}

}  // namespace ferry::control
