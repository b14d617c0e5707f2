#include "launch/machine_spec.h"

#include <cctype>
#include <cstdio>
#include <regex>

namespace ferry::launch {

namespace {

bool NameOk(const std::string& name) {
  if (name.empty() || name.size() > 63 || !std::isalnum(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

bool MacOk(const std::string& mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2 ? mac[i] != ':' : !std::isxdigit(static_cast<unsigned char>(mac[i]))) return false;
  }
  return (std::stoi(mac.substr(0, 2), nullptr, 16) & 1) == 0;  // unicast
}

std::string FormatIpv4(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." + std::to_string((a >> 8) & 255) +
         "." + std::to_string(a & 255);
}

}  // namespace

bool ParseIpv4(const std::string& text, uint32_t* out) {
  uint32_t a = 0;
  int parts = 0;
  size_t i = 0;
  while (parts < 4) {
    size_t start = i;
    uint32_t v = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) && i - start < 3) {
      v = v * 10 + static_cast<uint32_t>(text[i] - '0');
      ++i;
    }
    if (i == start || v > 255 || (i - start > 1 && text[start] == '0')) return false;
    a = (a << 8) | v;
    ++parts;
    if (parts < 4) {
      if (i >= text.size() || text[i] != '.') return false;
      ++i;
    }
  }
  if (i != text.size()) return false;
  *out = a;
  return true;
}

bool ParseCidr(const std::string& text, Ipv4Net* out) {
  size_t slash = text.find('/');
  if (slash == std::string::npos || slash + 1 >= text.size() || text.size() - slash - 1 > 2) return false;
  uint32_t a;
  if (!ParseIpv4(text.substr(0, slash), &a)) return false;
  int prefix = 0;
  for (size_t i = slash + 1; i < text.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return false;
    prefix = prefix * 10 + (text[i] - '0');
  }
  if (prefix > 32) return false;
  out->address = a;
  out->prefix = prefix;
  return true;
}

std::string SubnetOf(const NetworkSpec& network) {
  return network.subnet.empty() ? kDefaultUserSubnet : network.subnet;
}

std::string DeriveMac(const std::string& name) {
  uint32_t h = 2166136261u;  // FNV-1a, 32 bits: stable across builds and platforms
  for (unsigned char c : name) {
    h ^= c;
    h *= 16777619u;
  }
  char buf[18];
  std::snprintf(buf, sizeof buf, "52:54:00:%02x:%02x:%02x", (h >> 16) & 255, (h >> 8) & 255, h & 255);
  return buf;
}

std::string MacOf(const MachineSpec& spec) {
  if (spec.mac_address.empty()) return DeriveMac(spec.name);
  std::string mac = spec.mac_address;
  for (char& c : mac) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return mac;
}

Status ValidateSpec(const MachineSpec& spec) {
  if (!NameOk(spec.name)) {
    return InvalidArgument("machine name '" + spec.name +
                           "' is not usable: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit");
  }
  const std::string who = "machine " + spec.name + ": ";
  if (spec.cpus < 1 || spec.cpus > 64) return InvalidArgument(who + "cpus " + std::to_string(spec.cpus) + " is outside 1..64");
  if (spec.memory_mib < 64) {
    return InvalidArgument(who + "memory_mib " + std::to_string(spec.memory_mib) + " is below the minimum of 64");
  }
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    if (spec.disks[i].empty()) return InvalidArgument(who + "disk " + std::to_string(i) + " has an empty URI");
  }
  const NetworkSpec& net = spec.network;
  const std::string& mode = net.mode;
  if (mode != "user" && mode != "isolated" && mode != "bridge" && mode != "none") {
    return InvalidArgument(who + "network '" + net.name + "' has mode '" + mode + "': use user, isolated, bridge or none");
  }
  if (mode == "bridge" && net.bridge.empty()) {
    return InvalidArgument(who + "network '" + net.name + "' is a bridge network but names no bridge");
  }
  Ipv4Net subnet;
  const bool user_mode = mode == "user" || mode == "isolated";
  if (user_mode && (!ParseCidr(SubnetOf(net), &subnet) || subnet.prefix < 8 || subnet.prefix > 30)) {
    return InvalidArgument(who + "network '" + net.name + "' subnet '" + net.subnet +
                           "' is no IPv4 CIDR with a prefix of 8..30 (e.g. 10.0.2.0/24)");
  }
  if (!spec.ip_address.empty()) {
    uint32_t ip;
    if (!ParseIpv4(spec.ip_address, &ip)) return InvalidArgument(who + "ip_address '" + spec.ip_address + "' is no IPv4 address");
    if (mode == "none") return InvalidArgument(who + "ip_address " + spec.ip_address + " is set but network '" + net.name + "' has mode none");
    if (user_mode) {
      const uint32_t mask = ~uint32_t{0} << (32 - subnet.prefix);
      const uint32_t base = subnet.address & mask;
      const std::string where = "ip_address " + spec.ip_address + " ";
      const std::string range = "subnet " + SubnetOf(net) + " of network '" + net.name + "'";
      if ((ip & mask) != base) return InvalidArgument(who + where + "is outside the " + range);
      if (ip == base || ip == (base | ~mask) || ip == base + 2 || ip == base + 3) {
        return InvalidArgument(who + where + "is reserved in the " + range + " (network " + FormatIpv4(base) +
                               ", gateway .2, DNS .3, broadcast " + FormatIpv4(base | ~mask) + ")");
      }
    }
  }
  if (!spec.mac_address.empty() && !MacOk(spec.mac_address)) {
    return InvalidArgument(who + "mac_address '" + spec.mac_address + "' is no unicast xx:xx:xx:xx:xx:xx address");
  }
  if (spec.tcp_port < 0 || spec.tcp_port > 65535) {
    return InvalidArgument(who + "tcp_port " + std::to_string(spec.tcp_port) + " is outside 0..65535");
  }
  if (!spec.console_regex.empty()) {
    try {
      std::regex re(spec.console_regex, std::regex::extended);
    } catch (const std::regex_error& e) {
      return InvalidArgument(who + "console_regex '" + spec.console_regex + "' is no POSIX extended regular expression: " + e.what());
    }
  }
  return Status::Ok();
}

}  // namespace ferry::launch
