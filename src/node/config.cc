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
  if (auto v = t["retention"]["interval_ms"]) {
    auto n = v.value<int64_t>();
    if (!n || *n < 100) return bad("retention.interval_ms", "must be a number >= 100");
    c.retention_interval_ms = *n;
  }
  c.launcher.kind = "none";
  RETURN_IF_ERROR(str(t["launcher"]["kind"], "launcher.kind", false, &c.launcher.kind));
  RETURN_IF_ERROR(str(t["launcher"]["qemu_binary"], "launcher.qemu_binary", false, &c.launcher.qemu_binary));
  RETURN_IF_ERROR(str(t["launcher"]["accelerator"], "launcher.accelerator", false, &c.launcher.accelerator));
  RETURN_IF_ERROR(str(t["launcher"]["firmware"], "launcher.firmware", false, &c.launcher.firmware));
  RETURN_IF_ERROR(str(t["launcher"]["start_command"], "launcher.start_command", false, &c.launcher.start_command));
  RETURN_IF_ERROR(str(t["launcher"]["status_command"], "launcher.status_command", false, &c.launcher.status_command));
  RETURN_IF_ERROR(str(t["launcher"]["stop_command"], "launcher.stop_command", false, &c.launcher.stop_command));
  if (auto v = t["launcher"]["command_timeout_ms"]) {
    auto n = v.value<int64_t>();
    if (!n || *n < 100) return bad("launcher.command_timeout_ms", "must be a number >= 100");
    c.launcher.command_timeout_ms = *n;
  }
  if (c.launcher.kind != "qemu" && c.launcher.kind != "exec" && c.launcher.kind != "none") {
    return bad("launcher.kind", "'" + c.launcher.kind + "' is unknown: use qemu, exec or none");
  }
  if (c.launcher.accelerator != "auto" && c.launcher.accelerator != "kvm" && c.launcher.accelerator != "tcg") {
    return bad("launcher.accelerator", "'" + c.launcher.accelerator + "' is unknown: use auto, kvm or tcg");
  }
  if (c.launcher.kind == "exec" && c.launcher.start_command.empty()) {
    return bad("launcher.start_command", "is missing: the exec launcher needs at least a start command");
  }
  if (auto v = t["networks"]; v && !v.is_table()) return bad("networks", "must be a table of [networks.NAME]");
  if (auto* nets = t["networks"].as_table()) {
    for (auto& [key, value] : *nets) {
      const std::string name(key.str());
      const std::string where = "networks." + name;
      auto nt = toml::node_view<toml::node>(value);
      if (!nt.is_table()) return bad(where, "must be a table");
      if (name.empty() || name == "isolated" || name.find_first_not_of(
              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != std::string::npos) {
        return bad(where, "is not a usable network name (letters, digits, '.', '_', '-'; 'isolated' is reserved)");
      }
      launch::NetworkSpec n;
      n.name = name;
      n.subnet = "10.0.2.0/24";
      RETURN_IF_ERROR(str(nt["mode"], where + ".mode", false, &n.mode));
      RETURN_IF_ERROR(str(nt["bridge"], where + ".bridge", false, &n.bridge));
      RETURN_IF_ERROR(str(nt["subnet"], where + ".subnet", false, &n.subnet));
      if (n.mode != "user" && n.mode != "bridge" && n.mode != "none") {
        return bad(where + ".mode", "'" + n.mode + "' is unknown: use user, bridge or none");
      }
      if (n.mode == "bridge" && n.bridge.empty()) return bad(where + ".bridge", "is missing: mode bridge needs it");
      c.networks[name] = n;
    }
  }
  if (c.networks.empty()) {
    launch::NetworkSpec n;
    n.name = "default";
    n.subnet = "10.0.2.0/24";
    c.networks["default"] = n;
  }
  c.launcher.firmware = Resolve(base_dir, c.launcher.firmware);
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
