#include "control/errors.h"

namespace ferry::control {

namespace {
constexpr std::string_view kActionTag = "\n@action: ";
constexpr std::string_view kStateTag = "@invalid-state ";
}  // namespace

Status WithAction(Code code, const std::string& message, const std::string& action) {
  if (action.empty()) return Status(code, message);
  return Status(code, message + std::string(kActionTag) + action);
}

Status InvalidState(const std::string& message, const std::string& action) {
  return WithAction(Code::kFailedPrecondition, std::string(kStateTag) + message, action);
}

ErrorParts Describe(const Status& s) {
  ErrorParts p;
  p.code = std::string(CodeName(s.code()));
  std::string m(s.message());
  // Context prefixes ("step x: ") may sit before the tag; keep them in the message.
  if (size_t t = m.find(kStateTag); t != std::string::npos) {
    p.code = "InvalidState";
    m.erase(t, kStateTag.size());
  }
  if (size_t a = m.find(kActionTag); a != std::string::npos) {
    p.action = m.substr(a + kActionTag.size());
    m.resize(a);
  }
  p.message = std::move(m);
  return p;
}

}  // namespace ferry::control
