#include "control/schema.h"

namespace ferry::control {

const std::vector<store::Migration>& ControlMigrations() {
  static const std::vector<store::Migration> migrations = {
      {1,
       "inventory, items, jobs, recovery points",
       {
           "CREATE TABLE sites (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
           "created_at TEXT NOT NULL)",
           "CREATE TABLE enrollments (token TEXT PRIMARY KEY, site_id INTEGER NOT NULL "
           "REFERENCES sites(id), expires_ns INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0)",
           "CREATE TABLE nodes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
           "site_id INTEGER NOT NULL REFERENCES sites(id), api_url TEXT NOT NULL, "
           "api_token TEXT NOT NULL, link_address TEXT NOT NULL, nbd TEXT NOT NULL, "
           "secret TEXT NOT NULL, registered_at TEXT NOT NULL, "
           "last_heartbeat_ns INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT '{}')",
           "CREATE TABLE policies (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
           "rpo_threshold_s INTEGER NOT NULL, retention_hours INTEGER NOT NULL, "
           "app_interval_s INTEGER NOT NULL, crash_interval_s INTEGER NOT NULL, "
           "failback_policy_id INTEGER, created_at TEXT NOT NULL)",
           "CREATE TABLE machines (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
           "site_id INTEGER NOT NULL REFERENCES sites(id), node_id INTEGER NOT NULL "
           "REFERENCES nodes(id), disks TEXT NOT NULL, created_at TEXT NOT NULL)",
           // source/target describe the current replication direction; home_site is where
           // the machine ran when it was protected.
           "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
           "machine_id INTEGER NOT NULL REFERENCES machines(id), state TEXT NOT NULL, "
           "direction TEXT NOT NULL, active_site_id INTEGER NOT NULL, "
           "source_site_id INTEGER NOT NULL, target_site_id INTEGER NOT NULL, "
           "source_node_id INTEGER NOT NULL, target_node_id INTEGER NOT NULL, "
           "policy_id INTEGER NOT NULL REFERENCES policies(id), health TEXT NOT NULL, "
           "problems TEXT NOT NULL, rpo_seconds REAL, properties TEXT NOT NULL, "
           "disks TEXT NOT NULL, live TEXT NOT NULL, failover TEXT, test_failover TEXT, last_test TEXT, "
           "active_job_id INTEGER, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
           "CREATE INDEX items_by_state ON items(state, id)",
           "CREATE UNIQUE INDEX items_one_per_machine ON items(machine_id) "
           "WHERE state <> 'Disabled'",
           "CREATE TABLE jobs (id INTEGER PRIMARY KEY, type TEXT NOT NULL, "
           "target_kind TEXT NOT NULL, target_id INTEGER NOT NULL, target_name TEXT NOT NULL, "
           "state TEXT NOT NULL, phase TEXT NOT NULL, progress REAL NOT NULL, "
           "cancel_requested INTEGER NOT NULL, spec TEXT NOT NULL, data TEXT NOT NULL, "
           "error TEXT, created_at TEXT NOT NULL, started_at TEXT, ended_at TEXT)",
           "CREATE INDEX jobs_by_target ON jobs(target_kind, target_id, id)",
           "CREATE INDEX jobs_by_state ON jobs(state, id)",
           "CREATE TABLE job_steps (job_id INTEGER NOT NULL REFERENCES jobs(id), "
           "idx INTEGER NOT NULL, phase TEXT NOT NULL, name TEXT NOT NULL, title TEXT NOT NULL, "
           "state TEXT NOT NULL, weight REAL NOT NULL, progress REAL NOT NULL, "
           "message TEXT NOT NULL, started_at TEXT, ended_at TEXT, PRIMARY KEY (job_id, idx))",
           "CREATE TABLE recovery_points (item_id INTEGER NOT NULL REFERENCES items(id), "
           "seq INTEGER NOT NULL, time_ns INTEGER NOT NULL, kind TEXT NOT NULL, "
           "label TEXT NOT NULL, PRIMARY KEY (item_id, seq))",
           "CREATE INDEX recovery_points_by_time ON recovery_points(item_id, time_ns)",
       }},
  };
  return migrations;
}

}  // namespace ferry::control
