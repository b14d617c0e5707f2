#include "cli/resolve.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "cli/api_json.h"

namespace ferry::cli {

namespace {

bool LooksLikeId(const std::string& ref, const ResourceKind& kind) {
  const std::string prefix = kind.id_prefix;
  if (ref.size() <= prefix.size() || ref.compare(0, prefix.size(), prefix) != 0) return false;
  return std::all_of(ref.begin() + static_cast<std::ptrdiff_t>(prefix.size()), ref.end(),
                     [](unsigned char c) { return std::isdigit(c); });
}

}  // namespace

ApiOr<json> FindByRef(const json& items, const std::string& ref, const ResourceKind& kind) {
  std::vector<const json*> named;
  if (items.is_array()) {
    for (const json& r : items) {
      if (StringField(r, "id") == ref) return r;
      if (StringField(r, "name") == ref) named.push_back(&r);
    }
  }
  if (named.size() > 1) {
    std::vector<const json*> live;
    for (const json* r : named) {
      if (StringField(*r, "state") != "Disabled") live.push_back(r);
    }
    if (live.size() == 1) named = live;
  }
  if (named.size() == 1) return *named[0];
  const std::string noun = kind.noun;
  if (named.empty()) {
    return LocalError("NotFound", "no " + noun + " has the id or name '" + ref + "'",
                      "`" + std::string(kind.list_verb) + "` shows them");
  }
  std::string ids;
  for (const json* r : named) ids += (ids.empty() ? "" : ", ") + StringField(*r, "id");
  return LocalError("InvalidArgument",
                    std::to_string(named.size()) + " " + noun + "s are named '" + ref + "' (" + ids + ")",
                    "give the id instead of the name");
}

ApiOr<json> Resolve(ApiClient& client, const std::string& ref, const ResourceKind& kind) {
  if (ref.empty()) return LocalError("InvalidArgument", std::string("empty ") + kind.noun + " name");
  if (LooksLikeId(ref, kind)) {
    ApiOr<json> direct = client.Get(std::string(kind.collection) + "/" + UrlEncode(ref));
    if (direct.ok() || direct.error().http_status != 404) return direct;
  }
  ApiOr<json> all = client.List(kind.collection);
  if (!all.ok()) return all;
  return FindByRef((*all)["items"], ref, kind);
}

}  // namespace ferry::cli
