#include "node/config.h"

#include <toml++/toml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace ferry::node {

namespace {

std::string Resolve(const std::string& base, const std::string& p) {
  if (p.empty() || p[0] == '/' || base.empty()) return p;
  return (std::filesystem::path(base) / p).lexically_normal().string();
}

}  // namespace

Result<NodeConfig> ParseNodeConfig(const std::string& text, const std::string& origin,
                                   const std::string& base_dir) {
  toml::table t;
  try {
    t = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << e.source().begin;
    return InvalidArgument(origin + ": " + std::string(e.description()) + " at " + where.str());
  }
  NodeConfig c;
  auto bad = [&](const std::string& key, const std::string& want) {
    return InvalidArgument(origin + ": " + key + " " + want);
  };
  auto str = [&](const toml::node_view<toml::node> v, const std::string& key, bool required,
                 std::string* out) -> Status {
    if (!v) {
      return required ? bad(key, "is missing; add it") : Status::Ok();
    }
    auto s = v.value<std::string>();
    if (!s) return bad(key, "must be a string");
    *out = *s;
    return Status::Ok();
  };
  RETURN_IF_ERROR(str(t["name"], "name", true, &c.name));
  RETURN_IF_ERROR(str(t["site"], "site", true, &c.site));
  RETURN_IF_ERROR(str(t["data_dir"], "data_dir", true, &c.data_dir));
  RETURN_IF_ERROR(str(t["listen"]["api"], "listen.api", true, &c.api_listen));
  RETURN_IF_ERROR(str(t["listen"]["link"], "listen.link", false, &c.link_listen));
  auto nbd = t["listen"]["nbd"];
  if (nbd.is_string()) {
    c.nbd_listen.push_back(*nbd.value<std::string>());
  } else if (auto* arr = nbd.as_array()) {
    for (auto& n : *arr) {
      auto s = n.value<std::string>();
      if (!s) return bad("listen.nbd", "must be a string or a list of strings");
      c.nbd_listen.push_back(*s);
    }
  } else if (nbd) {
    return bad("listen.nbd", "must be a string or a list of strings");
  }
  RETURN_IF_ERROR(str(t["tls"]["cert"], "tls.cert", false, &c.tls_cert));
  RETURN_IF_ERROR(str(t["tls"]["key"], "tls.key", false, &c.tls_key));
  RETURN_IF_ERROR(str(t["tls"]["ca"], "tls.ca", false, &c.tls_ca));
  if (auto v = t["tls"]["insecure"]) {
    auto b = v.value<bool>();
    if (!b) return bad("tls.insecure", "must be true or false");
    c.insecure = *b;
  }
  RETURN_IF_ERROR(str(t["api_auth"]["token"], "api_auth.token", false, &c.api_token));
  RETURN_IF_ERROR(str(t["server"]["url"], "server.url", false, &c.server_url));
  RETURN_IF_ERROR(str(t["server"]["enroll_token"], "server.enroll_token", false, &c.enroll_token));
  RETURN_IF_ERROR(str(t["server"]["advertise_host"], "server.advertise_host", false, &c.advertise_host));
  if (!c.server_url.empty()) {
    if (c.server_url.rfind("https://", 0) == 0) {
      return bad("server.url", "uses https, which the node's server client does not support yet; "
                               "use an http:// URL");
    }
    if (c.server_url.rfind("http://", 0) != 0 || c.server_url.size() <= 7) {
      return bad("server.url", "must be http://HOST[:PORT], e.g. \"http://ferry.example:7443\"");
    }
  }
  if (auto v = t["throttle"]["bytes_per_second"]) {
    auto n = v.value<int64_t>();
    if (!n || *n < 0) return bad("throttle.bytes_per_second", "must be a number >= 0");
    c.throttle_bytes_per_second = static_cast<uint64_t>(*n);
  }
  if (c.name.empty() || c.name.find_first_of("/@ ") != std::string::npos) {
    return bad("name", "must be non-empty without '/', '@' or spaces");
  }
  const bool tls = !c.tls_cert.empty() || !c.tls_key.empty() || !c.tls_ca.empty();
  if (tls && (c.tls_cert.empty() || c.tls_key.empty() || c.tls_ca.empty())) {
    return bad("[tls]", "needs cert, key and ca together");
  }
  if (!tls && !c.insecure) {
    return bad("[tls]", "is missing: links need cert, key and ca (or insecure = true for a "
                        "test on one machine)");
  }
  c.data_dir = Resolve(base_dir, c.data_dir);
  c.tls_cert = Resolve(base_dir, c.tls_cert);
  c.tls_key = Resolve(base_dir, c.tls_key);
  c.tls_ca = Resolve(base_dir, c.tls_ca);
  return c;
}

Result<NodeConfig> LoadNodeConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return InvalidArgument("cannot read the node configuration " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseNodeConfig(ss.str(), path, std::filesystem::path(path).parent_path().string());
}

}  // namespace ferry::node
