// Reading the server's JSON defensively: a field that is missing, null or of another type
// reads as null or "", so that the CLI renders what an older or newer server sends instead
// of throwing (nlohmann::json's operator[] and value() throw on such input).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace ferry::cli {

using json = nlohmann::json;

// The member `key` of `object`; null when object is not an object or has no such member.
inline const json& Field(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

// The member as a string; "" when missing or not a string.
inline std::string StringField(const json& object, const char* key) {
  const json& v = Field(object, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

}  // namespace ferry::cli
