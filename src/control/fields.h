// Reading operation parameters from JSON bodies with errors that name the field: every API
// body goes through these, so that a wrong type, a missing field or an unknown field (a typo)
// is refused with kInvalidArgument before anything changes.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace ferry::control {

using nlohmann::json;

// kInvalidArgument naming the first field of body that is not in allowed; also when body is
// not an object.
Status CheckFields(const json& body, const std::vector<std::string>& allowed);
// Absent or null → fallback; no fallback → the field is required.
Result<std::string> StringField(const json& body, const std::string& name,
                                std::optional<std::string> fallback = std::nullopt);
Result<int64_t> IntField(const json& body, const std::string& name, std::optional<int64_t> fallback,
                         int64_t min, int64_t max);
Result<bool> BoolField(const json& body, const std::string& name, bool fallback);

// Names of sites, nodes, machines, items, policies: 1 to 63 letters, digits and '-',
// starting with a letter.
Status CheckName(const std::string& what, const std::string& name);
// "item-12" → 12 when the prefix matches; 0 otherwise.
int64_t ParseId(const std::string& prefix, const std::string& id);
std::string FormatId(const std::string& prefix, int64_t id);

}  // namespace ferry::control
