// Name -> id resolution: the verbs accept sites, nodes, policies, machines and replicated
// items by id ("item-4") or by name ("web1"), and look names up through the list endpoints.
//
// Rules (FindByRef): an exact id match wins; otherwise exactly one exact name match. When
// several resources share the name and exactly one of them is not Disabled (an item disabled
// for history and its successor), that one is meant. Errors (ApiError, kLocal):
//   NotFound         nothing has that id or name (exit 3);
//   InvalidArgument  the name is ambiguous; the message lists the ids to choose from (exit 10).
#pragma once

#include <string>

#include "cli/client.h"

namespace ferry::cli {

struct ResourceKind {
  const char* noun;        // "machine"
  const char* collection;  // "/machines"
  const char* id_prefix;   // "mach-"
  const char* list_verb;   // "ferry machine list"
};

inline constexpr ResourceKind kSiteKind{"site", "/sites", "site-", "ferry site list"};
inline constexpr ResourceKind kNodeKind{"node", "/nodes", "node-", "ferry node list"};
inline constexpr ResourceKind kPolicyKind{"policy", "/policies", "pol-", "ferry policy list"};
inline constexpr ResourceKind kMachineKind{"machine", "/machines", "mach-", "ferry machine list"};
inline constexpr ResourceKind kItemKind{"item", "/items", "item-", "ferry item list"};

// Picks the resource that `ref` names among `items` (a JSON array of resources).
ApiOr<json> FindByRef(const json& items, const std::string& ref, const ResourceKind& kind);

// The resource that `ref` names, fetched from the server: a ref shaped like an id is tried
// with GET first; otherwise (or on 404) the whole list is searched with FindByRef.
ApiOr<json> Resolve(ApiClient& client, const std::string& ref, const ResourceKind& kind);

}  // namespace ferry::cli
