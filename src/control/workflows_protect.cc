// Workflows that set replication up or take it down: enable, disable, update, reprotect.
//
// enable:    preflight → add-volumes → protect → initial-sync → finish (Protected)
//            undo: remove-replication → (item Disabled)
// disable:   remove-replication (no return) → finish (Disabled)
// update:    save
// reprotect: preflight → promote → prepare-target → protect → sync → finish (Protected, the
//            direction swapped); undo: stop-reverse-link → (item Committed)
// resync:    check-links → verify → finish (Protected; replication never stops)
//            undo: stop-verify → finish-undo
#include <spdlog/spdlog.h>

#include "control/fields.h"
#include "control/step_helpers.h"
#include "control/workflows.h"

namespace ferry::control {

using namespace steps;

namespace {

StepOutcome Preflight(JobContext& c, bool need_source) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  std::vector<int64_t> nodes{it.target_node};
  if (need_source) nodes.push_back(it.source_node);
  for (int64_t n : nodes) {
    STEP_ASSIGN(NodeClient node, Node(c, n));
    STEP_ASSIGN(json st, NodeStatus(node));
  }
  return StepOutcome::Done("nodes reachable");
}

// Stops the links, removes the capture volumes (their disks stay) and the replicas.
StepOutcome RemoveReplication(JobContext& c) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient src, Node(c, it.source_node));
  STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
  for (const json& d : it.disks) {
    std::string vol = d["volume"];
    auto stop = src.Post("/v1/volumes/" + vol + "/link/stop");
    if (!stop.ok() && !IsCode(stop.status(), Code::kNotFound) && !IsCode(stop.status(), Code::kFailedPrecondition)) {
      return FromError(stop.status());
    }
    auto del = src.Delete("/v1/volumes/" + vol);
    if (!del.ok() && !IsCode(del.status(), Code::kNotFound)) return FromError(del.status());
    auto rep = dst.Delete("/v1/replicas/" + vol + "?force=true");
    if (!rep.ok() && !IsCode(rep.status(), Code::kNotFound)) return FromError(rep.status());
  }
  return StepOutcome::Done("links stopped, volumes and replicas removed (the source disks are kept)");
}

StepOutcome FinishDisabled(JobContext& c) {
  STEP_CHECK(SaveItem(c, [](ItemRecord& it) {
    it.state = "Disabled";
    it.active_job = 0;
    it.failover = nullptr;
    it.test_failover = nullptr;
  }));
  return StepOutcome::Done();
}

// Waits until the target holds every disk completely with a recovery point.
StepOutcome WaitSynced(JobContext& c) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
  STEP_ASSIGN(json st, NodeStatus(dst));
  double total = 0;
  bool done = true;
  std::string msg;
  for (const json& d : it.disks) {
    std::string vol = d["volume"];
    const json* r = Find(st, "replicas", vol);
    double pct = 0;
    std::string eta;
    bool disk_done = false;
    if (r) {
      const json& is = r->value("initial_sync", json::object());
      pct = is.value("percent", 0.0);
      if (is.contains("eta_seconds") && is["eta_seconds"].is_number()) {
        eta = ", ETA " + std::to_string(static_cast<int64_t>(is["eta_seconds"].get<double>())) + " s";
      }
      disk_done = !is.value("running", false) && pct >= 100.0 && r->value("markers", 0) > 0;
    }
    if (disk_done) pct = 100;
    done = done && disk_done;
    total += pct;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f%%", pct);
    msg += (msg.empty() ? "" : "; ") + d["name"].get<std::string>() + " " + buf + eta;
  }
  if (done) return StepOutcome::Done(msg);
  return StepOutcome::Wait(msg, it.disks.empty() ? 100 : total / static_cast<double>(it.disks.size()), 1000);
}

StepOutcome AddVolumes(JobContext& c) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient src, Node(c, it.source_node));
  STEP_ASSIGN(json st, NodeStatus(src));
  json disks = it.disks;
  for (json& d : disks) {
    std::string vol = d["volume"];
    const json* v = Find(st, "volumes", vol);
    json made;
    if (v) {
      if (v->value("disk", "") != d["path"]) {
        return StepOutcome::Fail(WithAction(Code::kAlreadyExists,
                                            "node " + src.name() + " already has a volume '" + vol + "' on disk " +
                                                v->value("disk", "") + ", not " + d["path"].get<std::string>(),
                                            "remove that volume from the node or give the item another name"));
      }
      made = *v;
    } else {
      STEP_ASSIGN(made, src.Post("/v1/volumes", json{{"name", vol}, {"disk", d["path"]}, {"create_size", d["size"]}}));
    }
    d["size"] = made.value("size", d["size"].get<int64_t>());
  }
  STEP_CHECK(SaveItem(c, [&](ItemRecord& i) { i.disks = disks; }));
  return StepOutcome::Done();
}

StepOutcome Protect(JobContext& c, bool set_initial_sync) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient src, Node(c, it.source_node));
  STEP_ASSIGN(std::string link, LinkAddress(c, it.target_node));
  STEP_ASSIGN(json body, ProtectBody(c, it, link));
  STEP_ASSIGN(json st, NodeStatus(src));
  for (const json& d : it.disks) {
    std::string vol = d["volume"];
    const json* v = Find(st, "volumes", vol);
    if (v && v->contains("link") && (*v)["link"].is_object() && (*v)["link"].value("setting", "") != "stopped") {
      continue;  // protected by an earlier run of this step
    }
    STEP_ASSIGN(json ignored, src.Post("/v1/volumes/" + vol + "/protect", body));
  }
  if (set_initial_sync) STEP_CHECK(SaveItem(c, [](ItemRecord& i) { i.state = "InitialSync"; }));
  return StepOutcome::Done("replicating toward " + link);
}

class EnableWorkflow : public Workflow {
 public:
  std::vector<StepDef> Steps(const json&) const override {
    return {
        {"preflight", "Check the nodes", 1, [](JobContext& c) { return Preflight(c, true); }},
        {"add-volumes", "Add the disks to the source node", 1, AddVolumes},
        {"protect", "Start replication", 1, [](JobContext& c) { return Protect(c, true); }},
        {"initial-sync", "Initial sync", 20, WaitSynced},
        {"finish", "Mark the item protected", 1,
         [](JobContext& c) {
           STEP_CHECK(SaveItem(c, [](ItemRecord& it) {
             it.state = "Protected";
             it.active_job = 0;
           }));
           return StepOutcome::Done();
         }},
    };
  }
  std::vector<StepDef> UndoSteps(const json&) const override {
    return {{"remove-replication", "Remove the replication", 1, RemoveReplication},
            {"finish-undo", "Mark the item disabled", 1, FinishDisabled}};
  }
};

class DisableWorkflow : public Workflow {
 public:
  std::vector<StepDef> Steps(const json&) const override {
    return {{"remove-replication", "Remove the replication", 1, RemoveReplication, true},
            {"finish", "Mark the item disabled", 1, FinishDisabled}};
  }
  std::vector<StepDef> UndoSteps(const json&) const override {
    return {{"finish-undo", "Release the item", 1, [](JobContext& c) {
               STEP_CHECK(SaveItem(c, [](ItemRecord& it) { it.active_job = 0; }));
               return StepOutcome::Done();
             }}};
  }
};

class UpdateWorkflow : public Workflow {
 public:
  std::vector<StepDef> Steps(const json&) const override {
    return {{"save", "Save the properties", 1, [](JobContext& c) {
               STEP_CHECK(SaveItem(c, [&](ItemRecord& it) {
                 it.properties = c.spec()["properties"];
                 it.active_job = 0;
               }));
               return StepOutcome::Done();
             }}};
  }
  std::vector<StepDef> UndoSteps(const json&) const override {
    return {{"finish-undo", "Release the item", 1, [](JobContext& c) {
               STEP_CHECK(SaveItem(c, [](ItemRecord& it) { it.active_job = 0; }));
               return StepOutcome::Done();
             }}};
  }
};

// Reprotect: the committed disks at the target become the source (promote), the old source's
// disks become the seeds of the new replicas (original location: only differing blocks
// travel) and replication runs the other way.
StepOutcome Promote(JobContext& c) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));
  STEP_ASSIGN(json st, NodeStatus(dst));
  for (const json& d : it.disks) {
    std::string vol = d["volume"];
    if (Find(st, "volumes", vol)) continue;  // promoted by an earlier run
    json body = {{"volume", vol}};
    std::string dir = c.spec().value("disk_dir", "");
    if (!dir.empty()) body["disk"] = dir + "/" + vol + ".img";
    STEP_ASSIGN(json ignored, dst.Post("/v1/replicas/" + vol + "/promote", body));
  }
  return StepOutcome::Done("the recovered disks are now captured at " + dst.name());
}

StepOutcome PrepareTarget(JobContext& c) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient src, Node(c, it.source_node));  // the old source: the new target
  STEP_ASSIGN(NodeClient dst, Node(c, it.target_node));  // the new source
  STEP_ASSIGN(json src_st, NodeStatus(src));
  STEP_ASSIGN(json dst_st, NodeStatus(dst));
  const bool original = c.spec().value("location", "original") == "original";
  json disks = it.disks;
  for (json& d : disks) {
    std::string vol = d["volume"];
    const json* old = Find(src_st, "volumes", vol);
    const bool has_volume = old != nullptr;
    if (old) {
      // Remember the old disk before its volume goes: it seeds the new replica.
      d["seed"] = old->value("disk", "");
      STEP_CHECK(SaveItem(c, [&](ItemRecord& i) { i.disks = disks; }));
      auto stop = src.Post("/v1/volumes/" + vol + "/link/stop");
      if (!stop.ok() && !IsCode(stop.status(), Code::kFailedPrecondition)) return FromError(stop.status());
      // Original location: the replica's preparation takes the volume over (seed_volume), so
      // that what it wrote after the failover point travels as known changes.
      if (!original) {
        STEP_ASSIGN(json ignored, src.Delete("/v1/volumes/" + vol));
      }
    }
    if (Find(src_st, "replicas", vol)) {  // prepared by an earlier run
      if (has_volume) {
        STEP_ASSIGN(json ignored, src.Delete("/v1/volumes/" + vol));
      }
      continue;
    }
    const json* nv = Find(dst_st, "volumes", vol);
    if (!nv) {
      return StepOutcome::Fail(Internal("volume " + vol + " is missing on " + dst.name() + " after promote"));
    }
    json body = {{"name", vol}, {"volume_id", (*nv)["volume_id"]}, {"history_id", (*nv)["history_id"]},
                 {"size", (*nv)["size"]}, {"block_size", nv->value("block_size", 4096)},
                 {"first_seq", nv->value("log_last_seq", int64_t{0}) + 1}};
    if (original) {
      body["seed"] = d.value("seed", "");
      if (has_volume) body["seed_volume"] = vol;
    }
    STEP_ASSIGN(json ignored, src.Post("/v1/replicas", body));
  }
  STEP_CHECK(SaveItem(c, [&](ItemRecord& i) { i.disks = disks; }));
  return StepOutcome::Done(original ? "replicas seeded from the original disks" : "empty replicas (full copy)");
}

class ReprotectWorkflow : public Workflow {
 public:
  std::vector<StepDef> Steps(const json&) const override {
    return {
        {"preflight", "Check both nodes", 1,
         [](JobContext& c) {
           // Where replication came from: the swap and its undo compare the item with it, so
           // that each is idempotent whatever was persisted before a crash.
           if (!c.data().contains("orig_source")) {
             STEP_ASSIGN(ItemRecord it, LoadItem(c));
             c.data()["orig_source"] = it.source_node;
           }
           return Preflight(c, true);
         }},
        {"promote", "Capture the recovered disks", 1, Promote},
        {"prepare-target", "Prepare the replicas at the other site", 2, PrepareTarget},
        {"swap", "Reverse the direction", 1,
         [](JobContext& c) {
           STEP_ASSIGN(ItemRecord it, LoadItem(c));
           if (it.source_node == c.data()["orig_source"].get<int64_t>()) {
             STEP_CHECK(c.ctl().db().Transaction([&](store::Sql& tx) -> Status {
               std::swap(it.source_node, it.target_node);
               std::swap(it.source_site, it.target_site);
               it.direction = it.direction == "forward" ? "reverse" : "forward";
               for (json& d : it.disks) {
                 d["path"] = "";  // filled in by the protect step from the new source's status
               }
               RETURN_IF_ERROR(c.ctl().items().Store(tx, it));
               return tx.Exec("DELETE FROM recovery_points WHERE item_id = $1", {it.id}).status();
             }));
           }
           return StepOutcome::Done();
         }},
        {"protect", "Start replication in the reverse direction", 1,
         [](JobContext& c) {
           StepOutcome o = Protect(c, false);
           if (o.kind != StepOutcome::Kind::kDone) return o;
           STEP_ASSIGN(ItemRecord it, LoadItem(c));
           STEP_ASSIGN(NodeClient src, Node(c, it.source_node));
           STEP_ASSIGN(json st, NodeStatus(src));
           json disks = it.disks;
           for (json& d : disks) {
             if (const json* v = Find(st, "volumes", d["volume"].get<std::string>())) d["path"] = v->value("disk", "");
           }
           STEP_CHECK(SaveItem(c, [&](ItemRecord& i) { i.disks = disks; }));
           return o;
         }},
        {"sync", "Sync the differences", 20,
         [](JobContext& c) {
           StepOutcome o = WaitSynced(c);
           if (o.kind != StepOutcome::Kind::kDone) return o;
           // What travelled: the new source's links count their bytes.
           STEP_ASSIGN(ItemRecord it, LoadItem(c));
           STEP_ASSIGN(NodeClient src, Node(c, it.source_node));
           STEP_ASSIGN(json st, NodeStatus(src));
           int64_t wire = 0, raw = 0;
           std::map<std::string, int> methods;  // how each disk's sync found what to send
           for (const json& d : it.disks) {
             if (const json* v = Find(st, "volumes", d["volume"].get<std::string>())) {
               const json& l = v->value("link", json::object());
               if (l.is_object()) {
                 wire += l.value("wire_bytes", int64_t{0});
                 raw += l.value("raw_bytes", int64_t{0});
                 const json& is = l.value("initial_sync", json::object());
                 const std::string m = is.is_object() ? is.value("method", "") : "";
                 if (!m.empty()) ++methods[m];
               }
             }
           }
           c.data()["wire_bytes"] = wire;
           c.data()["raw_bytes"] = raw;
           o.message += "; sent " + std::to_string(wire) + " bytes on the wire (" + std::to_string(raw) +
                        " bytes of records)";
           std::string by;
           for (const auto& [m, n] : methods) {
             by += (by.empty() ? "" : ", ") + std::to_string(n) + " by " + m;
           }
           if (!by.empty()) o.message += "; disks synced: " + by;
           return o;
         }},
        {"finish", "Mark the item protected", 1,
         [](JobContext& c) {
           STEP_CHECK(SaveItem(c, [](ItemRecord& it) {
             it.state = "Protected";
             it.failover = nullptr;
             it.active_job = 0;
           }));
           return StepOutcome::Done();
         }},
    };
  }
  std::vector<StepDef> UndoSteps(const json&) const override {
    return {{"stop-reverse-link", "Stop the reverse replication", 1,
             [](JobContext& c) {
               STEP_ASSIGN(ItemRecord it, LoadItem(c));
               if (!c.data().contains("orig_source") || it.source_node == c.data()["orig_source"].get<int64_t>()) {
                 return StepOutcome::Done("nothing to stop");
               }
               STEP_ASSIGN(NodeClient src, Node(c, it.source_node));
               for (const json& d : it.disks) {
                 auto r = src.Post("/v1/volumes/" + d["volume"].get<std::string>() + "/link/stop");
                 if (!r.ok() && !IsCode(r.status(), Code::kNotFound) && !IsCode(r.status(), Code::kFailedPrecondition)) {
                   return FromError(r.status());
                 }
               }
               return StepOutcome::Done();
             }},
            {"finish-undo", "Return the item to Committed", 1, [](JobContext& c) {
               // Back to the committed item's direction; the prepared replicas and the seeds
               // stay for the next reprotect.
               int64_t orig = c.data().value("orig_source", int64_t{0});
               STEP_CHECK(SaveItem(c, [&](ItemRecord& it) {
                 if (orig != 0 && it.source_node != orig) {
                   std::swap(it.source_node, it.target_node);
                   std::swap(it.source_site, it.target_site);
                   it.direction = it.direction == "forward" ? "reverse" : "forward";
                 }
                 it.state = "Committed";
                 it.active_job = 0;
               }));
               return StepOutcome::Done("the recovered machine keeps running unprotected; reprotect again");
             }}};
  }
};

// Resync (a forced digest resync, docs/protocols/link.md "Verify"): each disk's link compares
// the source disk with the target's newest state and resyncs only the blocks that differ.
std::string VerifyId(const JobContext& c, const json& disk) {
  return JobEngine::JobId(c.id()) + "/" + disk["name"].get<std::string>();
}

std::string Bytes(uint64_t n) {
  char buf[32];
  if (n >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(n) / (1ull << 30));
  } else if (n >= (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1ull << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%.0f KiB", static_cast<double>(n) / 1024);
  }
  return buf;
}

StepOutcome CheckLinks(JobContext& c) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient src, Node(c, it.source_node));
  STEP_ASSIGN(json st, NodeStatus(src));
  for (const json& d : it.disks) {
    const json* v = Find(st, "volumes", d["volume"]);
    const std::string disk = d["name"];
    if (!v || !v->contains("link") || !(*v)["link"].is_object()) {
      return StepOutcome::Fail(WithAction(Code::kFailedPrecondition,
                                          "disk " + disk + " is not replicating from node " + src.name(),
                                          "protect the item again (disable, then ferry protect)"));
    }
    const json& link = (*v)["link"];
    // What was asked (the link may take a moment to get there), then what it does.
    const std::string setting = link.value("setting", "running");
    const std::string state = setting != "running" ? setting : link.value("state", "");
    if (state == "stopped" || state == "paused" || state == "blocked") {
      std::string why = link.value("last_error", "");
      return StepOutcome::Fail(WithAction(
          Code::kFailedPrecondition, "the link of disk " + disk + " is " + state + (why.empty() ? "" : ": " + why),
          "resume it on node " + src.name() + " (POST /v1/volumes/" + d["volume"].get<std::string>() +
              "/link/resume), then resync again"));
    }
  }
  return StepOutcome::Done("every disk's link is running");
}

StepOutcome VerifyDisks(JobContext& c) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient src, Node(c, it.source_node));
  STEP_ASSIGN(json st, NodeStatus(src));
  bool done = true;
  double total = 0;
  std::string msg;
  for (const json& d : it.disks) {
    const std::string disk = d["name"], vol = d["volume"], id = VerifyId(c, d);
    const json* v = Find(st, "volumes", vol);
    if (!v || !v->contains("link") || !(*v)["link"].is_object()) {
      return StepOutcome::Fail(WithAction(Code::kFailedPrecondition,
                                          "disk " + disk + " stopped replicating from node " + src.name(),
                                          "protect the item again (disable, then ferry protect)"));
    }
    const json& link = (*v)["link"];
    json verify = link.value("verify", json::object());
    if (verify.value("id", "") != id) {
      // Not asked yet (or the node lost its saved verify): ask.
      STEP_ASSIGN(verify, src.Post("/v1/volumes/" + vol + "/link/resync", json{{"id", id}}));
    }
    const std::string state = verify.value("state", "waiting");
    const uint64_t differing = verify.value("differing_bytes", uint64_t{0});
    const uint64_t closed_at = verify.value("consistent_from", uint64_t{0});
    const uint64_t acked = link.value("acked_seq", uint64_t{0});
    const bool disk_done = state == "done" && acked >= closed_at;
    double pct = verify.value("percent", 0.0) * 0.8;
    std::string line = disk + ": ";
    if (disk_done) {
      pct = 100;
      line += differing ? Bytes(differing) + " differed and were resynced" +
                              (closed_at ? " (consistent from seq " + std::to_string(closed_at) + ")" : "")
                        : std::string(verify.value("cancelled", false) ? "cancelled, nothing found"
                                                                       : "no difference");
    } else if (state == "rewriting" || state == "done") {
      pct = 90;
      line += Bytes(differing) + " differ; resyncing them";
    } else if (state == "comparing") {
      char buf[48];
      std::snprintf(buf, sizeof buf, "comparing, %.1f%%", verify.value("percent", 0.0));
      line += buf;
      if (differing) line += ", " + Bytes(differing) + " differ so far";
    } else {
      const std::string ls = link.value("state", "");
      line += ls == "replicating" ? "waiting for the link's resync to finish" : "waiting for the link (" + ls + ")";
    }
    done = done && disk_done;
    total += pct;
    msg += (msg.empty() ? "" : "; ") + line;
  }
  if (!done) return StepOutcome::Wait(msg, it.disks.empty() ? 100 : total / static_cast<double>(it.disks.size()), 1000);
  return StepOutcome::Done(msg);
}

StepOutcome StopVerify(JobContext& c) {
  STEP_ASSIGN(ItemRecord it, LoadItem(c));
  STEP_ASSIGN(NodeClient src, Node(c, it.source_node));
  for (const json& d : it.disks) {
    auto r = src.Delete("/v1/volumes/" + d["volume"].get<std::string>() + "/link/resync");
    if (!r.ok() && !IsCode(r.status(), Code::kNotFound)) return FromError(r.status());
  }
  return StepOutcome::Done("comparing stopped; blocks found so far are still resynced");
}

StepOutcome ReleaseItem(JobContext& c) {
  STEP_CHECK(SaveItem(c, [](ItemRecord& it) { it.active_job = 0; }));
  return StepOutcome::Done();
}

class ResyncWorkflow : public Workflow {
 public:
  std::vector<StepDef> Steps(const json&) const override {
    return {{"check-links", "Check the links", 1, CheckLinks},
            {"verify", "Compare source and target, resync what differs", 20, VerifyDisks},
            {"finish", "Release the item", 1, ReleaseItem}};
  }
  std::vector<StepDef> UndoSteps(const json&) const override {
    return {{"stop-verify", "Stop comparing", 1, StopVerify}, {"finish-undo", "Release the item", 1, ReleaseItem}};
  }
};

}  // namespace

void RegisterProtectWorkflows(JobEngine& engine) {
  engine.Register("enable", std::make_unique<EnableWorkflow>());
  engine.Register("disable", std::make_unique<DisableWorkflow>());
  engine.Register("update", std::make_unique<UpdateWorkflow>());
  engine.Register("reprotect", std::make_unique<ReprotectWorkflow>());
  engine.Register("resync", std::make_unique<ResyncWorkflow>());
}

}  // namespace ferry::control
