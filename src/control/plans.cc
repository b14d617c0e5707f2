// Plan definitions and readiness (docs/plans.md).
#include "control/plans.h"

#include "control/errors.h"

namespace ferry::control {

Result<json> Plans::Create(const json&) { return Internal("recovery plans are not built yet"); }
Result<json> Plans::List(const Page&) { return Internal("recovery plans are not built yet"); }
Result<json> Plans::Get(const std::string&) { return Internal("recovery plans are not built yet"); }
Result<json> Plans::Replace(const std::string&, const json&) { return Internal("recovery plans are not built yet"); }
Status Plans::Delete(const std::string&) { return Internal("recovery plans are not built yet"); }
Result<int64_t> Plans::PlanId(store::Sql&, const std::string&) { return Internal("recovery plans are not built yet"); }
Result<json> Plans::Readiness(const std::string&) { return Internal("recovery plans are not built yet"); }
Result<PlanRecord> Plans::Load(store::Sql&, int64_t) { return Internal("recovery plans are not built yet"); }
Result<json> Plans::ToJson(store::Sql&, const PlanRecord&) { return Internal("recovery plans are not built yet"); }

}  // namespace ferry::control
