// Pieces the item workflows share: loading and saving the item from a step, node clients,
// reading a node's status, resolving recovery points, and turning errors into step outcomes.
// Every helper is idempotent, like the steps that use it.
#pragma once

#include <functional>
#include <string>

#include "control/controller.h"
#include "control/errors.h"
#include "control/jobs.h"

namespace ferry::control::steps {

Result<ItemRecord> LoadItem(JobContext& c);
// Loads the item, applies change, stores it: one transaction.
Status SaveItem(JobContext& c, const std::function<void(ItemRecord&)>& change);

Result<NodeClient> Node(JobContext& c, int64_t node_id);
Result<json> NodeStatus(const NodeClient& node);
// The entry named name in status[list] ("volumes" or "replicas"), or null.
const json* Find(const json& status, const std::string& list, const std::string& name);
Result<std::string> LinkAddress(JobContext& c, int64_t node_id);

// An unreachable node makes the step wait and try again (the job shows why and can be
// cancelled); any other error fails the step.
StepOutcome FromError(const Status& s);
bool IsCode(const Status& s, Code code);

// Resolves an item's recovery point on the target node, disk by disk, into data["seqs"]
// ({volume: seq}) and data["point_time"]. Named points resolve on each disk; a seq or a time
// resolves on the first disk and the others take the newest record at or before its time.
Status ResolvePoint(JobContext& c, const ItemRecord& item, const NodeClient& target, const std::string& point);
// Creates overlay `name` at data["seqs"] on every disk (an existing one is kept) and records
// the NBD URIs in data["uris"] ({volume: uri}).
Status CreateOverlays(JobContext& c, const ItemRecord& item, const NodeClient& target, const std::string& name);
// Discards overlay `name` on every disk; missing ones are fine.
Status DiscardOverlays(const ItemRecord& item, const NodeClient& target, const std::string& name);

// The protect request's body for a link toward target_link under the item's policy for the
// direction (the failback policy when reverse).
Result<json> ProtectBody(JobContext& c, const ItemRecord& item, const std::string& target_link);

}  // namespace ferry::control::steps

// Evaluates a Result inside a step; on error the step returns FromError(status).
#define STEP_ASSIGN(lhs, expr) STEP_ASSIGN_IMPL(FERRY_CONCAT(_step_, __LINE__), lhs, expr)
#define STEP_ASSIGN_IMPL(tmp, lhs, expr)                        \
  auto tmp = (expr);                                            \
  if (!tmp.ok()) return ::ferry::control::steps::FromError(tmp.status()); \
  lhs = std::move(tmp).value()
#define STEP_CHECK(expr)                                                  \
  do {                                                                    \
    ::ferry::Status _s = (expr);                                          \
    if (!_s.ok()) return ::ferry::control::steps::FromError(_s);          \
  } while (0)
