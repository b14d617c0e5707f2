// What every launcher checks and derives from a MachineSpec before it starts anything: the
// validation that makes a bad spec fail with kInvalidArgument naming the field, the MAC
// address derived from the name, and IPv4 subnet arithmetic for the user-mode networks.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "launch/launcher.h"

namespace ferry::launch {

// The subnet user and isolated networks use when the site names none (QEMU's default).
inline constexpr const char* kDefaultUserSubnet = "10.0.2.0/24";

// kInvalidArgument naming the field when: the name does not match
// [A-Za-z0-9][A-Za-z0-9._-]{0,62}; cpus is outside 1..64; memory_mib < 64; the network mode is
// not user|isolated|bridge|none; bridge mode has no bridge; the subnet is no IPv4 CIDR with a
// prefix of 8..30; ip_address is no IPv4 address or (user/isolated) lies outside the subnet or
// is its network, broadcast, gateway (.2) or DNS (.3) address; mac_address is not
// xx:xx:xx:xx:xx:xx unicast; tcp_port is outside 0..65535; console_regex is no valid POSIX
// extended regular expression; a disk URI is empty.
Status ValidateSpec(const MachineSpec& spec);

// A stable, locally administered unicast MAC for a machine name: 52:54:00 (QEMU's prefix)
// and three bytes of the name's hash. The same name always gives the same MAC, so the
// machine's DHCP lease and its interface name survive relaunches.
std::string DeriveMac(const std::string& name);
// spec.mac_address when set (lower-cased), else DeriveMac(spec.name).
std::string MacOf(const MachineSpec& spec);

// The subnet a user/isolated network hands addresses from: spec.network.subnet or the default.
std::string SubnetOf(const NetworkSpec& network);

struct Ipv4Net {
  uint32_t address = 0;  // host byte order
  int prefix = 0;
};
// "10.0.2.0/24" -> {0x0a000200, 24}; false if malformed.
bool ParseCidr(const std::string& text, Ipv4Net* out);
// "10.0.2.15" -> 0x0a00020f; false if malformed.
bool ParseIpv4(const std::string& text, uint32_t* out);

}  // namespace ferry::launch
