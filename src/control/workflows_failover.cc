// Workflows that bring a machine up at the target site from its recovery points.
//
// test-failover:  preflight → resolve-point → create-overlays → launch → boot → finish
//                 (TestFailover; the machine runs in an isolated network)
//                 undo: remove-machine → discard-overlays → (Protected)
// cleanup-test-failover: remove-machine → discard-overlays (no return) → finish (Protected,
//                 last test kept)
// failover:       preflight → power-off-source → shutdown-source → sync-final →
//                 pause-replication → resolve-point → create-overlays → launch → boot → finish
//                 (FailedOver)
//                 undo: remove-machine → discard-overlays → unfence-source → restart-source →
//                 resume-replication → (Protected)
// change-recovery-point: resolve-point → create-overlays → switch (no return: the machine on
//                 the old point stops) → launch → boot
//                 undo: discard-new-overlays
// commit:         stop-replication → commit (no return) → wait-commit → finish (Committed)
//                 undo: finish-undo → (FailedOver; a link stopped by stop-replication stays
//                 stopped: nothing FailedOver allows needs it)
//
// Overlays are named after their job ("test-17", "fo-18"), so a step run again after a
// restart finds what it made before.
#include "control/step_helpers.h"
#include "control/step_launch.h"
#include "control/workflows.h"

namespace ferry::control {

using namespace steps;

namespace {

StepOutcome TargetPreflight(JobContext& c) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
  STEP_ASSIGN(json st, NodeStatus(dst));
  for (const json& d : it.disks) {
    std::string vol = d["volume"];
    const json* r = Find(st, "replicas", vol);
    if (!r) {
      return StepOutcome::Fail(WithAction(Code::kFailedPrecondition,
                                          "node " + dst.name() + " has no replica of disk " + d["name"].get<std::string>(),
                                          "check the item's replication (ferry item show) and resync it"));
    }
    if (r->value("initial_sync", json::object()).value("running", false)) {
      return StepOutcome::Fail(WithAction(Code::kFailedPrecondition,
                                          "disk " + d["name"].get<std::string>() + " is still in its initial sync",
                                          "wait until it finishes"));
    }
  }
  return StepOutcome::Done("the target node holds every disk");
}

// A recovery plan may have chosen the point for this machine (its consistency group's common
// point: plan_jobs.cc, ChoosePoints); it overrides the requested one.
StepOutcome ResolveStep(JobContext& c, const std::string& requested) {
  const std::string point = c.data().value("point_override", requested);
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
  STEP_CHECK(ResolvePoint(c, it, dst, point));
  return StepOutcome::Done("point " + point + " is " + c.data()["point_time"].get<std::string>());
}

StepOutcome OverlaysStep(JobContext& c, const std::string& name) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  if (!c.data().contains("uris")) c.data()["uris"] = json::object();
  STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
  STEP_CHECK(CreateOverlays(c, it, dst, name));
  return StepOutcome::Done("disks served at " + c.data()["uris"].dump());
}

StepOutcome DiscardStep(JobContext& c, const std::string& name) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
  Status s = DiscardOverlays(it, dst, name);
  // A job cancelled before it made any disk need not wait for an unreachable target.
  if (IsCode(s, Code::kUnavailable) && !c.data().contains("uris")) {
    return StepOutcome::Done("the target node is unreachable, and this job made no disks there");
  }
  STEP_CHECK(s);
  return StepOutcome::Done();
}

std::string TestName(const JobContext& c) { return "test-" + std::to_string(c.id()); }
std::string FailoverName(const JobContext& c) { return "fo-" + std::to_string(c.id()); }

json FailoverRecord(JobContext& c) {
  return {{"job", JobEngine::JobId(c.id())}, {"point", c.data().value("point_override", c.spec().value("point", ""))},
          {"point_time", c.data().value("point_time", "")}, {"seqs", c.data().value("seqs", json::object())},
          {"overlay", c.data().value("overlay", "")}, {"uris", c.data().value("uris", json::object())},
          {"planned", c.spec().value("planned", false)}};
}

class TestFailoverWorkflow : public Workflow {
 public:
  std::vector<StepDef> Steps(const json&) const override {
    return {
        {"preflight", "Pre-flight checks", 1, TargetPreflight},
        {"resolve-point", "Resolve the recovery point", 1,
         [](JobContext& c) { return ResolveStep(c, c.spec()["point"]); }},
        {"create-overlays", "Prepare the test disks", 1, [](JobContext& c) { return OverlaysStep(c, TestName(c)); }},
        {"launch", "Start the test machine in an isolated network", 1, [](JobContext& c) { return LaunchStep(c, true); }},
        {"boot", "Wait for the test machine to boot", 4, BootStep},
        {"finish", "Mark the test failover running", 1,
         [](JobContext& c) {
           json rec = FailoverRecord(c);
           rec["machine"] = c.data().value("machine", json());
           rec["boot"] = c.data().value("boot", json());
           rec["network"] = c.spec().value("network", "isolated");
           rec["at"] = FormatTime(c.ctl().clock().NowNanos());
           STEP_CHECK(SaveItem(c, [&](ItemRecord& it) {
             it.state = "TestFailover";
             it.test_failover = rec;
             it.active_job = 0;
           }));
           return StepOutcome::Done();
         }},
    };
  }
  std::vector<StepDef> UndoSteps(const json&) const override {
    return {{"remove-machine", "Remove the test machine", 1, RemoveLaunched},
            {"discard-overlays", "Discard the test disks", 1, [](JobContext& c) { return DiscardStep(c, TestName(c)); }},
            {"finish-undo", "Return the item to Protected", 1, [](JobContext& c) {
               STEP_CHECK(SaveItem(c, [](ItemRecord& it) {
                 it.state = "Protected";
                 it.test_failover = nullptr;
                 it.active_job = 0;
               }));
               return StepOutcome::Done();
             }}};
  }
};

class CleanupTestWorkflow : public Workflow {
 public:
  std::vector<StepDef> Steps(const json&) const override {
    return {
        {"remove-machine", "Remove the test machine", 1, RemoveTestMachine},
        {"discard-overlays", "Discard the test disks", 1,
         [](JobContext& c) {
           STEP_ASSIGN(ItemRecord it, LoadItem(c));
           std::string name = it.test_failover.is_object() ? it.test_failover.value("overlay", "") : "";
           STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
           STEP_CHECK(DiscardOverlays(it, dst, name));
           return StepOutcome::Done();
         },
         true},
        {"finish", "Record the test and return to Protected", 1,
         [](JobContext& c) {
           std::string now = FormatTime(c.ctl().clock().NowNanos());
           STEP_CHECK(SaveItem(c, [&](ItemRecord& it) {
             if (it.test_failover.is_object()) {
               json boot = it.test_failover.value("boot", json());
               it.last_test = {{"at", now}, {"job", it.test_failover.value("job", "")},
                               {"boot_seconds", boot.is_object() ? boot.value("seconds", json()) : json()},
                               {"cleanup_job", JobEngine::JobId(c.id())}, {"notes", c.spec().value("notes", "")},
                               {"point", it.test_failover.value("point", "")},
                               {"point_time", it.test_failover.value("point_time", "")}};
             }
             it.test_failover = nullptr;
             it.state = "Protected";
             it.active_job = 0;
           }));
           return StepOutcome::Done();
         }},
    };
  }
  std::vector<StepDef> UndoSteps(const json&) const override {
    return {{"finish-undo", "Keep the test failover", 1, [](JobContext& c) {
               STEP_CHECK(SaveItem(c, [](ItemRecord& it) { it.active_job = 0; }));
               return StepOutcome::Done();
             }}};
  }
};

StepOutcome ShutdownSource(JobContext& c) {
  const bool planned = c.spec().value("planned", false);
  if (!c.spec().value("shutdown_source", false)) return StepOutcome::Done("not asked");
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  auto src = Node(c, it.source_node);
  json fence = c.data().value("fence", json::object());
  Status failed;
  if (!src.ok()) failed = src.status();
  for (const json& d : it.disks) {
    if (!failed.ok()) break;
    std::string vol = d["volume"];
    if (fence.contains(vol)) continue;
    auto r = src->Post("/v1/volumes/" + vol + "/fence");
    if (!r.ok()) {
      failed = r.status();
      break;
    }
    fence[vol] = (*r)["seq"];
    c.data()["fence"] = fence;
  }
  if (failed.ok()) return StepOutcome::Done("the source's disks refuse writes from now on");
  if (planned) {
    return StepOutcome::Fail(WithAction(failed.code(), "cannot shut the source down: " + std::string(failed.message()),
                                        "a planned failover needs the source; bring it back, or cancel and run an "
                                        "unplanned failover"));
  }
  return StepOutcome::Done("could not shut the source down (" + std::string(failed.message()) + "); going on");
}

// After the source was shut down, the target should hold every write up to its last marker:
// a planned failover waits for that as long as it takes (zero data loss); an unplanned one
// waits at most kUnplannedSyncSeconds, then goes on with what the target has.
constexpr int64_t kUnplannedSyncSeconds = 60;

StepOutcome SyncFinal(JobContext& c) {
  const bool planned = c.spec().value("planned", false);
  if (c.data().value("fence", json::object()).empty()) {
    return StepOutcome::Done(planned ? "nothing to wait for" : "the source was not shut down: nothing to wait for");
  }
  const int64_t now = c.ctl().clock().NowNanos();
  if (!c.data().contains("sync_since")) c.data()["sync_since"] = now;
  if (!planned && now - c.data()["sync_since"].get<int64_t>() > kUnplannedSyncSeconds * kNanosPerSecond) {
    return StepOutcome::Done("the target did not receive the source's last writes within " +
                             std::to_string(kUnplannedSyncSeconds) + " s; going on with what it has");
  }
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient src, Node(c, it.source_node));
  auto got = NodeStatus(src);
  if (!got.ok() && !planned) return StepOutcome::Done("the source went away: going on with what the target has");
  STEP_ASSIGN(json st, std::move(got));
  json fence = c.data().value("fence", json::object());
  size_t done = 0;
  std::string msg;
  for (const json& d : it.disks) {
    std::string vol = d["volume"];
    const json* v = Find(st, "volumes", vol);
    int64_t want = fence.value(vol, int64_t{0});
    int64_t acked = v && (*v).contains("link") && (*v)["link"].is_object() ? (*v)["link"].value("acked_seq", int64_t{0}) : 0;
    if (acked >= want) ++done;
    msg += (msg.empty() ? "" : "; ") + d["name"].get<std::string>() + " acknowledged " + std::to_string(acked) + "/" +
           std::to_string(want);
  }
  if (done == it.disks.size()) return StepOutcome::Done("the target holds every write: " + msg);
  return StepOutcome::Wait(msg, 100.0 * static_cast<double>(done) / static_cast<double>(it.disks.size()), 500);
}

// link action on every source volume; unreachable sources are reported, not fatal, unless
// the failover is planned.
StepOutcome LinkAction(JobContext& c, const std::string& action, bool required) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  auto src = Node(c, it.source_node);
  std::string problems;
  for (const json& d : it.disks) {
    if (!src.ok()) {
      problems = std::string(src.status().message());
      break;
    }
    auto r = src->Post("/v1/volumes/" + d["volume"].get<std::string>() + "/link/" + action);
    if (!r.ok() && !IsCode(r.status(), Code::kNotFound) && !IsCode(r.status(), Code::kFailedPrecondition)) {
      if (required) return FromError(r.status());
      problems = std::string(r.status().message());
      break;
    }
  }
  if (problems.empty()) return StepOutcome::Done();
  return StepOutcome::Done("the source could not be reached (" + problems + "); do it there when it is back");
}

class FailoverWorkflow : public Workflow {
 public:
  std::vector<StepDef> Steps(const json&) const override {
    return {
        {"preflight", "Pre-flight checks", 1, TargetPreflight},
        {"power-off-source", "Shut the source machine down", 1, PowerOffSource},
        {"shutdown-source", "Fence the source's disks", 1, ShutdownSource},
        {"sync-final", "Ship the last writes", 3, SyncFinal},
        {"pause-replication", "Pause replication", 1,
         [](JobContext& c) { return LinkAction(c, "pause", c.spec().value("planned", false)); }},
        {"resolve-point", "Resolve the recovery point", 1,
         [](JobContext& c) {
           if (c.spec().value("planned", false)) {
             // The fence marker of the first disk: every write the source answered.
             STEP_ASSIGN(ItemRecord it, LoadItem(c));
             std::string vol = it.disks[0]["volume"];
             return ResolveStep(c, "seq:" + std::to_string(c.data()["fence"][vol].get<int64_t>()));
           }
           return ResolveStep(c, c.spec()["point"]);
         }},
        {"create-overlays", "Prepare the recovered disks", 1,
         [](JobContext& c) { return OverlaysStep(c, FailoverName(c)); }},
        {"launch", "Start the recovered machine", 1, [](JobContext& c) { return LaunchStep(c, false); }},
        {"boot", "Wait for the recovered machine to boot", 4, BootStep},
        {"finish", "Mark the item failed over", 1,
         [](JobContext& c) {
           json rec = FailoverRecord(c);
           rec["at"] = FormatTime(c.ctl().clock().NowNanos());
           rec["boot"] = c.data().value("boot", json());
           STEP_ASSIGN(ItemRecord before, LoadItem(c));
           json running = RunningRecord(c, before);
           // The machine at the old source (stopped, or left to the operator) is removed at
           // commit; until then its console can still be read.
           if (before.running.is_object()) {
             rec["previous_machine"] = {{"node", before.running["node"]}, {"name", before.running["name"]}};
           } else if (c.data().contains("poweroff")) {
             rec["previous_machine"] = {{"node", c.data()["poweroff"]["node"]}, {"name", c.data()["poweroff"]["name"]}};
           }
           STEP_CHECK(SaveItem(c, [&](ItemRecord& it) {
             it.state = "FailedOver";
             it.failover = rec;
             it.running = running;
             it.active_site = it.target_site;
             it.active_job = 0;
           }));
           return StepOutcome::Done();
         }},
    };
  }
  std::vector<StepDef> UndoSteps(const json&) const override {
    return {{"remove-machine", "Remove the recovered machine", 1, RemoveLaunched},
            {"discard-overlays", "Discard the recovered disks", 1,
             [](JobContext& c) { return DiscardStep(c, FailoverName(c)); }},
            {"unfence-source", "Let the source write again", 1,
             [](JobContext& c) {
               json fence = c.data().value("fence", json::object());
               if (fence.empty()) return StepOutcome::Done("it was not shut down");
               STEP_ASSIGN(ItemRecord it, LoadItem(c));
               STEP_ASSIGN(NodeClient src, Node(c, it.source_node));
               for (const auto& [vol, seq] : fence.items()) {
                 auto r = src.Post("/v1/volumes/" + vol + "/unfence");
                 if (!r.ok() && !IsCode(r.status(), Code::kNotFound)) return FromError(r.status());
               }
               return StepOutcome::Done();
             }},
            {"restart-source", "Start the source machine again", 1, RestartSource},
            {"resume-replication", "Resume replication", 1, [](JobContext& c) { return LinkAction(c, "resume", false); }},
            {"finish-undo", "Return the item to Protected", 1, [](JobContext& c) {
               STEP_CHECK(SaveItem(c, [](ItemRecord& it) {
                 it.state = "Protected";
                 it.failover = nullptr;
                 it.active_site = it.source_site;
                 it.active_job = 0;
               }));
               return StepOutcome::Done();
             }}};
  }
};

class ChangePointWorkflow : public Workflow {
 public:
  std::vector<StepDef> Steps(const json&) const override {
    return {
        {"resolve-point", "Resolve the recovery point", 1,
         [](JobContext& c) { return ResolveStep(c, c.spec()["point"]); }},
        {"create-overlays", "Prepare the disks at the new point", 1,
         [](JobContext& c) { return OverlaysStep(c, FailoverName(c)); }},
        {"switch", "Switch to the new point", 1,
         [](JobContext& c) {
           STEP_ASSIGN(ItemRecord it, LoadItem(c));
           std::string old = it.failover.is_object() ? it.failover.value("overlay", "") : "";
           json rec = FailoverRecord(c);
           rec["at"] = FormatTime(c.ctl().clock().NowNanos());
           if (old != FailoverName(c)) {
             // The machine runs on the old point's disks: it stops before they go.
             STEP_CHECK(RemoveRunning(c, it));
             STEP_CHECK(SaveItem(c, [&](ItemRecord& i) {
               i.failover = rec;
               i.running = nullptr;
             }));
             STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
             STEP_CHECK(DiscardOverlays(it, dst, old));
           }
           return StepOutcome::Done("the machine's disks are now at " + rec["point_time"].get<std::string>());
         },
         true},
        {"launch", "Start the machine at the new point", 1, [](JobContext& c) { return LaunchStep(c, false); }},
        {"boot", "Wait for the machine to boot", 4, BootStep},
        {"finish", "Record the running machine", 1,
         [](JobContext& c) {
           STEP_ASSIGN(ItemRecord before, LoadItem(c));
           json running = RunningRecord(c, before);
           STEP_CHECK(SaveItem(c, [&](ItemRecord& i) {
             i.running = running;
             if (i.failover.is_object()) i.failover["boot"] = c.data().value("boot", json());
             i.active_job = 0;
           }));
           return StepOutcome::Done();
         }},
    };
  }
  std::vector<StepDef> UndoSteps(const json&) const override {
    return {{"discard-new-overlays", "Discard the disks at the new point", 1,
             [](JobContext& c) { return DiscardStep(c, FailoverName(c)); }},
            {"finish-undo", "Keep the previous point", 1, [](JobContext& c) {
               STEP_CHECK(SaveItem(c, [](ItemRecord& it) { it.active_job = 0; }));
               return StepOutcome::Done();
             }}};
  }
};

class CommitWorkflow : public Workflow {
 public:
  std::vector<StepDef> Steps(const json&) const override {
    return {
        {"stop-replication", "Stop replication from the old source", 1,
         [](JobContext& c) { return LinkAction(c, "stop", false); }},
        {"commit", "Commit the recovered disks", 1,
         [](JobContext& c) {
           STEP_ASSIGN(ItemRecord it, LoadItem(c));
           STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
           std::string name = it.failover.value("overlay", "");
           for (const json& d : it.disks) {
             std::string vol = d["volume"];
             auto r = dst.Post("/v1/replicas/" + vol + "/overlays/" + name + "/commit");
             if (!r.ok() && !IsCode(r.status(), Code::kFailedPrecondition)) return FromError(r.status());
           }
           return StepOutcome::Done("consolidating in the background; the machine keeps running");
         },
         true},
        {"wait-commit", "Consolidate the disks", 10,
         [](JobContext& c) {
           STEP_ASSIGN(ItemRecord it, LoadItem(c));
           STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
           STEP_ASSIGN(json st, NodeStatus(dst));
           double total = 0;
           bool done = true;
           for (const json& d : it.disks) {
             const json* r = Find(st, "replicas", d["volume"].get<std::string>());
             json commit = r ? r->value("commit", json::object()) : json::object();
             bool disk_done = commit.value("state", "") == "done";
             done = done && disk_done;
             total += disk_done ? 100.0 : commit.value("percent", 0.0);
           }
           if (done) return StepOutcome::Done();
           return StepOutcome::Wait("consolidating", total / static_cast<double>(it.disks.size()), 500);
         }},
        {"finish", "Mark the item committed", 1,
         [](JobContext& c) {
           STEP_ASSIGN(ItemRecord it, LoadItem(c));
           std::string note;
           json prev = it.failover.is_object() ? it.failover.value("previous_machine", json()) : json();
           if (prev.is_object() && !(it.running.is_object() && it.running["node"] == prev["node"] &&
                                     it.running["name"] == prev["name"])) {
             ItemRecord old = it;
             old.running = prev;
             Status gone = RemoveRunning(c, old);
             note = gone.ok() ? "removed the machine at the old site; "
                              : "could not remove machine " + prev["name"].get<std::string>() + " at the old site (" +
                                    std::string(gone.message()) + "); remove it there; ";
           }
           STEP_CHECK(SaveItem(c, [](ItemRecord& it) {
             it.state = "Committed";
             it.active_job = 0;
           }));
           return StepOutcome::Done(note + "reprotect the item to replicate it back");
         }},
    };
  }
  std::vector<StepDef> UndoSteps(const json&) const override {
    return {{"finish-undo", "Return the item to FailedOver", 1, [](JobContext& c) {
               STEP_CHECK(SaveItem(c, [](ItemRecord& it) {
                 it.state = "FailedOver";
                 it.active_job = 0;
               }));
               return StepOutcome::Done();
             }}};
  }
};

}  // namespace

void RegisterFailoverWorkflows(JobEngine& engine) {
  engine.Register("test-failover", std::make_unique<TestFailoverWorkflow>());
  engine.Register("cleanup-test-failover", std::make_unique<CleanupTestWorkflow>());
  engine.Register("failover", std::make_unique<FailoverWorkflow>());
  engine.Register("change-recovery-point", std::make_unique<ChangePointWorkflow>());
  engine.Register("commit", std::make_unique<CommitWorkflow>());
}

void RegisterWorkflows(JobEngine& engine) {
  RegisterProtectWorkflows(engine);
  RegisterFailoverWorkflows(engine);
  RegisterPlanWorkflows(engine);
}

}  // namespace ferry::control
