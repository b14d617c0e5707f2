// Plan operations and their workflows (docs/plans.md, "Operations", "The job").
#include "control/errors.h"
#include "control/plans.h"

namespace ferry::control {

Result<json> Plans::Operate(const std::string&, const std::string&, const json&) {
  return Internal("plan operations are not built yet");
}

void RegisterPlanWorkflows(JobEngine&) {}

}  // namespace ferry::control
