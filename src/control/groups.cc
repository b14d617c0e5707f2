// Consistency groups (docs/plans.md, "Consistency groups").
#include "control/groups.h"

#include "control/errors.h"

namespace ferry::control {

Result<json> Groups::Create(const json&) { return Internal("consistency groups are not built yet"); }
Result<json> Groups::List(const Page&) { return Internal("consistency groups are not built yet"); }
Result<json> Groups::Get(const std::string&) { return Internal("consistency groups are not built yet"); }
Status Groups::Delete(const std::string&) { return Internal("consistency groups are not built yet"); }
Result<json> Groups::AddMember(const std::string&, const json&) { return Internal("consistency groups are not built yet"); }
Result<json> Groups::RemoveMember(const std::string&, const std::string&) {
  return Internal("consistency groups are not built yet");
}
Result<int64_t> Groups::GroupId(store::Sql&, const std::string&) { return Internal("consistency groups are not built yet"); }
Result<int64_t> Groups::Ensure(store::Sql&, const std::string&) { return Internal("consistency groups are not built yet"); }
void Groups::TakeDuePoints() {}
Result<GroupPoint> Groups::LatestCommonPoint(int64_t, bool) { return Internal("consistency groups are not built yet"); }

}  // namespace ferry::control
