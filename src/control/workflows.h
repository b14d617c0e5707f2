// The item workflows (one Workflow per job type; their steps are listed at the top of each
// .cc file). RegisterWorkflows (controller.h) registers them all.
#pragma once

#include "control/jobs.h"

namespace ferry::control {

// enable, disable, update, reprotect (workflows_protect.cc).
void RegisterProtectWorkflows(JobEngine& engine);
// test-failover, cleanup-test-failover, failover, change-recovery-point, commit
// (workflows_failover.cc).
void RegisterFailoverWorkflows(JobEngine& engine);

}  // namespace ferry::control
