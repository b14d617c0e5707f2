#include "control/fields.h"

#include <algorithm>
#include <charconv>

namespace ferry::control {

Status CheckFields(const json& body, const std::vector<std::string>& allowed) {
  if (!body.is_object()) return InvalidArgument("the request body must be a JSON object");
  for (const auto& [key, value] : body.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return InvalidArgument("unknown field '" + key + "'" +
                             (list.empty() ? std::string("; this request takes no fields")
                                           : "; the fields are: " + list));
    }
  }
  return Status::Ok();
}

Result<std::string> StringField(const json& body, const std::string& name, std::optional<std::string> fallback) {
  if (!body.contains(name) || body[name].is_null()) {
    if (fallback) return *fallback;
    return InvalidArgument("field '" + name + "' is required");
  }
  if (!body[name].is_string()) return InvalidArgument("field '" + name + "' must be a string");
  return body[name].get<std::string>();
}

Result<int64_t> IntField(const json& body, const std::string& name, std::optional<int64_t> fallback,
                         int64_t min, int64_t max) {
  if (!body.contains(name) || body[name].is_null()) {
    if (fallback) return *fallback;
    return InvalidArgument("field '" + name + "' is required");
  }
  const json& v = body[name];
  if (!v.is_number_integer()) return InvalidArgument("field '" + name + "' must be an integer");
  int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX ? INT64_MAX : v.get<int64_t>();
  if (x < min || x > max) {
    return InvalidArgument("field '" + name + "' must be from " + std::to_string(min) + " to " +
                           std::to_string(max) + ", not " + std::to_string(x));
  }
  return x;
}

Result<bool> BoolField(const json& body, const std::string& name, bool fallback) {
  if (!body.contains(name) || body[name].is_null()) return fallback;
  if (!body[name].is_boolean()) return InvalidArgument("field '" + name + "' must be true or false");
  return body[name].get<bool>();
}

Status CheckName(const std::string& what, const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63 && std::isalpha(static_cast<unsigned char>(name[0]));
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') ok = false;
  }
  if (!ok) {
    return InvalidArgument(what + " name '" + name +
                           "' is not valid: use 1 to 63 letters, digits and '-', starting with a letter");
  }
  return Status::Ok();
}

int64_t ParseId(const std::string& prefix, const std::string& id) {
  if (id.size() <= prefix.size() + 1 || id.compare(0, prefix.size(), prefix) != 0 || id[prefix.size()] != '-') {
    return 0;
  }
  int64_t v = 0;
  const char* b = id.data() + prefix.size() + 1;
  const char* e = id.data() + id.size();
  auto [p, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || p != e || v <= 0) return 0;
  return v;
}

std::string FormatId(const std::string& prefix, int64_t id) { return prefix + "-" + std::to_string(id); }

}  // namespace ferry::control
