#include "cli/tables.h"

#include <gtest/gtest.h>

#include "cli/format.h"

namespace ferry::cli {
namespace {

// The item of the API narrative (docs/protocols/server-api.md).
json WebItem() {
  return json::parse(R"({"id": "item-1", "name": "web1", "machine": "mach-1", "state": "Protected",
    "health": "Healthy", "problems": [], "direction": "forward",
    "active_site": "primary", "source_site": "primary", "target_site": "recovery",
    "source_node": "node-1", "target_node": "node-2", "policy": "pol-1",
    "rpo_seconds": 3.1, "allowed_operations": ["test-failover", "failover", "update", "resync", "disable"],
    "properties": {"target_name": "web1", "cpus": 1, "memory_mib": 512, "network": "default", "ip_address": ""},
    "disks": [{"name": "disk0", "volume": "web1.disk0", "size": 1073741824,
               "initial_sync": {"percent": 100.0, "eta_seconds": null},
               "pending_bytes": 0, "rpo_seconds": 3.1, "uri": ""}],
    "last_test_failover": {"at": "2026-11-26T05:06:18Z", "job": "job-4", "notes": "boots"},
    "failover": null, "active_job": null,
    "created_at": "2026-11-25T10:00:00Z", "updated_at": "2026-11-26T05:10:00Z"})");
}

TEST(FormatTableTest, AlignsColumnsWithoutTrailingBlanks) {
  EXPECT_EQ(FormatTable({"ID", "NAME", "NOTE"}, {{"site-1", "primary", ""}, {"site-22", "dr", "x"}}),
            "ID       NAME     NOTE\n"
            "site-1   primary\n"
            "site-22  dr       x\n");
}

TEST(FormatTest, DurationsPercentsAndRpo) {
  EXPECT_EQ(FormatDuration(0.04), "0.0s");
  EXPECT_EQ(FormatDuration(3.14), "3.1s");
  EXPECT_EQ(FormatDuration(59.94), "59.9s");
  EXPECT_EQ(FormatDuration(125), "2m05s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(3 * 86400 + 4 * 3600), "3d04h");
  EXPECT_EQ(FormatDuration(-1), "-");
  EXPECT_EQ(FormatSeconds(json(3.1)), "3.1s");
  EXPECT_EQ(FormatSeconds(json()), "-");
  EXPECT_EQ(FormatPercent(json(42.5)), "42.5%");
  EXPECT_EQ(FormatPercent(json(100.0)), "100%");
  EXPECT_EQ(FormatPercent(json("x")), "-");
  EXPECT_EQ(*SecondsBetween(json("2026-11-26T05:06:18Z"), json("2026-11-26T05:06:19.5Z")), 1.5);
  EXPECT_FALSE(SecondsBetween(json("2026-11-26T05:06:18Z"), json()).has_value());
}

TEST(TextTest, MissingNullArraysAndObjects) {
  json j = json::parse(R"({"s": "x", "n": 3, "z": null, "a": ["p", "q"], "e": [],
                           "o": [{"message": "node-2 silent for 20s"}], "b": true})");
  EXPECT_EQ(Text(j, "s"), "x");
  EXPECT_EQ(Text(j, "n"), "3");
  EXPECT_EQ(Text(j, "z"), "-");
  EXPECT_EQ(Text(j, "missing"), "-");
  EXPECT_EQ(Text(j, "a"), "p, q");
  EXPECT_EQ(Text(j, "e"), "-");
  EXPECT_EQ(Text(j, "o"), "node-2 silent for 20s");
  EXPECT_EQ(Text(j, "b"), "true");
  EXPECT_EQ(Text(json("not an object"), "s"), "-");
}

TEST(ItemsTableTest, ColumnsAndValues) {
  json syncing = WebItem();
  syncing["id"] = "item-2";
  syncing["name"] = "db1";
  syncing["state"] = "InitialSync";
  syncing["rpo_seconds"] = nullptr;
  syncing["disks"][0]["initial_sync"]["percent"] = 42.5;
  syncing["active_job"] = "job-9";
  EXPECT_EQ(ItemsTable(json::array({WebItem(), syncing})).Format(),
            "ID      NAME  STATE              HEALTH   RPO   DIRECTION  ACTIVE-SITE  JOB\n"
            "item-1  web1  Protected          Healthy  3.1s  forward    primary      -\n"
            "item-2  db1   InitialSync 42.5%  Healthy  -     forward    primary      job-9\n");
}

TEST(JobsTableTest, ColumnsAndValues) {
  json jobs = json::parse(R"([
    {"id": "job-4", "type": "failover", "target": {"kind": "item", "id": "item-1", "name": "web1"},
     "state": "InProgress", "progress": 42.5, "cancel_requested": true, "started_at": "2026-11-26T05:06:18Z"},
    {"id": "job-5", "type": "enable", "target": {"kind": "item", "id": "item-2"},
     "state": "NotStarted", "progress": 0, "started_at": null}])");
  EXPECT_EQ(JobsTable(jobs).Format(),
            "ID     TYPE      TARGET  STATE                    PROGRESS  STARTED\n"
            "job-4  failover  web1    InProgress (cancelling)  42.5%     2026-11-26T05:06:18Z\n"
            "job-5  enable    item-2  NotStarted               0%        -\n");
}

TEST(ItemDetailsTest, KeyValuesThenDisks) {
  std::string text = ItemDetails(WebItem());
  EXPECT_NE(text.find("id:                 item-1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("replication:        primary (node-1) -> recovery (node-2)\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("rpo:                3.1s\n"), std::string::npos) << text;
  EXPECT_NE(text.find("allowed operations: test-failover, failover, update, resync, disable\n"),
            std::string::npos);
  EXPECT_NE(text.find("memory:             512 MiB\n"), std::string::npos);
  EXPECT_NE(text.find("ip address:         -\n"), std::string::npos);
  EXPECT_NE(text.find("consistency group:  -\n"), std::string::npos) << text;
  json grouped = WebItem();
  grouped["consistency_group"] = "shop";
  EXPECT_NE(ItemDetails(grouped).find("consistency group:  shop\n"), std::string::npos);
  EXPECT_NE(text.find("last test failover: 2026-11-26T05:06:18Z (job-4): boots\n"), std::string::npos);
  EXPECT_NE(text.find("failed over:        -\n"), std::string::npos);
  EXPECT_NE(text.find("\ndisks:\n"
                      "NAME   VOLUME      SIZE     INITIAL-SYNC  PENDING  RPO   URI\n"
                      "disk0  web1.disk0  1.0 GiB  100%          0 B      3.1s  -\n"),
            std::string::npos)
      << text;
}

TEST(JobDetailsTest, KeyValuesErrorAndSteps) {
  json job = json::parse(R"({"id": "job-4", "type": "failover",
    "target": {"kind": "item", "id": "item-1", "name": "web1"}, "state": "Failed", "progress": 50,
    "cancel_requested": false, "allowed_actions": [], "created_at": "2026-11-26T05:06:17Z",
    "started_at": "2026-11-26T05:06:18Z", "ended_at": "2026-11-26T05:06:30Z",
    "error": {"code": "Unavailable", "message": "node-2 did not answer", "action": "start node-2, then retry"},
    "steps": [
      {"name": "preflight", "title": "Pre-flight checks", "state": "Succeeded",
       "started_at": "2026-11-26T05:06:18Z", "ended_at": "2026-11-26T05:06:18.200Z", "message": "", "progress": 100},
      {"name": "start", "title": "Start the machine", "state": "Failed",
       "started_at": "2026-11-26T05:06:18.200Z", "ended_at": "2026-11-26T05:06:30Z",
       "message": "node-2 did not answer", "progress": 0}]})");
  std::string text = JobDetails(job);
  EXPECT_NE(text.find("target:           web1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("duration:         12.0s\n"), std::string::npos) << text;
  EXPECT_NE(text.find("error:            Unavailable: node-2 did not answer\n"
                      "action:           start node-2, then retry\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\nsteps:\n"
                      "STEP               STATE      DURATION  MESSAGE\n"
                      "Pre-flight checks  Succeeded  0.2s\n"
                      "Start the machine  Failed     11.8s     node-2 did not answer\n"),
            std::string::npos)
      << text;
}

TEST(OtherTablesTest, SitesNodesPoliciesMachinesPoints) {
  EXPECT_EQ(SitesTable(
                json::parse(R"([{"id": "site-1", "name": "primary", "created_at": "2026-11-26T05:06:18Z"}])"))
                .Format(),
            "ID      NAME     CREATED\nsite-1  primary  2026-11-26T05:06:18Z\n");
  EXPECT_EQ(PoliciesTable(json::parse(R"([{"id": "pol-1", "name": "default", "rpo_threshold_seconds": 60,
      "retention_hours": 24, "app_consistent_interval_seconds": 3600, "crash_consistent_interval_seconds": 5,
      "failback_policy": "pol-1"}])"))
                .rows[0],
            (std::vector<std::string>{"pol-1", "default", "60s", "24h", "3600s", "5s", "pol-1"}));
  EXPECT_EQ(
      MachinesTable(json::parse(R"([{"id": "mach-1", "name": "web1", "site": "primary", "node": "node-1",
      "disks": [{"name": "disk0"}, {"name": "disk1"}]}])"))
          .rows[0],
      (std::vector<std::string>{"mach-1", "web1", "primary", "node-1", "disk0,disk1"}));
  EXPECT_EQ(
      NodesTable(json::parse(R"([{"id": "node-2", "name": "dr1", "site": "recovery", "health": "Warning",
      "last_heartbeat_at": "2026-11-26T05:06:18Z", "api_url": "http://10.0.0.2:7800"}])"))
          .rows[0],
      (std::vector<std::string>{"node-2", "dr1", "recovery", "Warning", "2026-11-26T05:06:18Z",
                                "http://10.0.0.2:7800"}));
  EXPECT_EQ(RecoveryPointsTable(json::parse(R"([{"id": "marker:ab12", "time": "2026-11-26T05:06:18Z",
      "kind": "app-consistent", "label": "", "seqs": {"disk0": 812}}])"))
                .rows[0],
            (std::vector<std::string>{"marker:ab12", "2026-11-26T05:06:18Z", "app-consistent", "-"}));
  EXPECT_EQ(
      MachineDetails(json::parse(R"({"id": "mach-1", "name": "web1", "site": "primary", "node": "node-1",
      "disks": [{"name": "disk0", "path": "/srv/web1-disk0.img", "size": 1073741824}]})")),
      "id:   mach-1\nname: web1\nsite: primary\nnode: node-1\n\ndisks:\n"
      "NAME   PATH                 SIZE\ndisk0  /srv/web1-disk0.img  1.0 GiB\n");
}

}  // namespace
}  // namespace ferry::cli
