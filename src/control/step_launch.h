// Steps that run machines through the nodes' launchers (docs/launchers.md): launch a
// recovered machine from the disks a job prepared, wait until it has booted (running and its
// probe answers), remove it, and power the source machine off before a failover. Shared by
// the failover, test-failover, change-recovery-point and cleanup workflows.
//
// Job data they keep (so a step run again after a restart finds what it did):
//   data["machine"]  {"node", "name", "launch"}: the machine this job launched
//   data["boot"]     {"since", "seconds", "accelerator"}: boot wait and its result
//   data["poweroff"] {"node", "name", "since", "adopted"}: the source machine being stopped
#pragma once

#include <string>

#include "control/step_helpers.h"

namespace ferry::control::steps {

// The name the recovered machine gets at the target: the item's target name (forward) or the
// machine's own name (reverse, i.e. back home); test failovers append "-test".
Result<std::string> LaunchName(JobContext& c, const ItemRecord& item, bool test);

// Launches the machine on the item's target node from data["uris"]; test: in the isolated
// copy of its network.
StepOutcome LaunchStep(JobContext& c, bool test);
// Waits until the launched machine runs and its probe (the machine's run.probe) succeeds,
// up to run.probe.timeout_s; fails with the console's last lines when it stops or times out.
StepOutcome BootStep(JobContext& c);
// Removes the machine recorded under data["machine"] (or, with from_item_test, the item's
// test machine). Missing machines are fine.
StepOutcome RemoveLaunched(JobContext& c);
StepOutcome RemoveTestMachine(JobContext& c);
// Removes the machine the item runs (item.running) on its node: change-recovery-point, before
// the disks it uses go away.
Status RemoveRunning(JobContext& c, const ItemRecord& item);
// Before a failover: powers the machine off at the current source — the one a launcher runs
// there (item.running), else the machine's run.shutdown (QMP socket or command, adopted on
// the source node) — graceful within run.shutdown.timeout_s, then forced. Never blocks the
// failover: an unreachable node or a machine that does not stop is reported and passed.
StepOutcome PowerOffSource(JobContext& c);
// Undo of PowerOffSource: starts a launcher-run source machine again; an external one is
// left to the operator (the message says so).
StepOutcome RestartSource(JobContext& c);
// The item's record of a machine this job launched (for item.running).
json RunningRecord(JobContext& c, const ItemRecord& item);

}  // namespace ferry::control::steps
