#include "launch/machine_spec.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace ferry::launch {
namespace {

MachineSpec Spec() {
  MachineSpec s;
  s.name = "web-1";
  s.disks = {"nbd://127.0.0.1:10809/web-1"};
  s.network.name = "default";
  return s;
}

// The status is kInvalidArgument and its message holds every one of parts.
void ExpectInvalid(const MachineSpec& s, std::initializer_list<std::string> parts) {
  Status st = ValidateSpec(s);
  ASSERT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
  for (const auto& p : parts) EXPECT_NE(st.message().find(p), std::string::npos) << st.ToString() << " lacks " << p;
}

TEST(MachineSpecTest, AValidSpecPasses) {
  EXPECT_TRUE(ValidateSpec(Spec()).ok());
  MachineSpec s = Spec();
  s.ip_address = "10.0.2.15";
  s.mac_address = "52:54:00:AB:cd:01";
  s.console_regex = "^ferry-guest: ready";
  s.tcp_port = 22;
  EXPECT_TRUE(ValidateSpec(s).ok()) << ValidateSpec(s).ToString();
}

TEST(MachineSpecTest, NameMustMatchThePattern) {
  for (std::string bad : std::vector<std::string>{"", "-web", ".x", "a b", "a/b", "a,b", std::string(64, 'a')}) {
    MachineSpec s = Spec();
    s.name = bad;
    ExpectInvalid(s, {"machine name"});
  }
  MachineSpec s = Spec();
  s.name = std::string(63, 'a');
  EXPECT_TRUE(ValidateSpec(s).ok());
  s.name = "A1._-z";
  EXPECT_TRUE(ValidateSpec(s).ok());
}

TEST(MachineSpecTest, CpusAndMemoryHaveBounds) {
  MachineSpec s = Spec();
  s.cpus = 0;
  ExpectInvalid(s, {"cpus 0", "1..64"});
  s.cpus = 65;
  ExpectInvalid(s, {"cpus 65"});
  s.cpus = 64;
  EXPECT_TRUE(ValidateSpec(s).ok());
  s.memory_mib = 63;
  ExpectInvalid(s, {"memory_mib 63"});
  s.memory_mib = 64;
  EXPECT_TRUE(ValidateSpec(s).ok());
}

TEST(MachineSpecTest, IpOutsideTheSubnetNamesBoth) {
  MachineSpec s = Spec();
  s.network.subnet = "192.168.50.0/24";
  s.ip_address = "192.168.51.7";
  ExpectInvalid(s, {"192.168.51.7", "192.168.50.0/24", "default"});
  s.ip_address = "192.168.50.7";
  EXPECT_TRUE(ValidateSpec(s).ok());
  // Without a subnet: QEMU's default 10.0.2.0/24.
  s.network.subnet = "";
  ExpectInvalid(s, {"192.168.50.7", "10.0.2.0/24"});
}

TEST(MachineSpecTest, ReservedAddressesOfTheSubnetAreRefused) {
  MachineSpec s = Spec();
  for (std::string ip : std::vector<std::string>{"10.0.2.0", "10.0.2.2", "10.0.2.3", "10.0.2.255"}) {
    s.ip_address = ip;
    ExpectInvalid(s, {ip, "reserved"});
  }
}

TEST(MachineSpecTest, MalformedAddressesAndNetworks) {
  MachineSpec s = Spec();
  s.ip_address = "10.0.2.256";
  ExpectInvalid(s, {"no IPv4 address"});
  s.ip_address = "10.0.2.015";
  ExpectInvalid(s, {"no IPv4 address"});
  s = Spec();
  s.network.subnet = "10.0.2.0";
  ExpectInvalid(s, {"subnet '10.0.2.0'"});
  s.network.subnet = "10.0.0.0/31";
  ExpectInvalid(s, {"prefix of 8..30"});
  s = Spec();
  s.network.mode = "nat";
  ExpectInvalid(s, {"mode 'nat'"});
  s.network.mode = "bridge";
  ExpectInvalid(s, {"names no bridge"});
  s.network.bridge = "br0";
  s.ip_address = "172.16.0.9";  // a bridge's addresses are the LAN's business
  EXPECT_TRUE(ValidateSpec(s).ok());
  s.network.mode = "none";
  ExpectInvalid(s, {"mode none"});
  s = Spec();
  s.mac_address = "53:54:00:00:00:01";  // multicast bit
  ExpectInvalid(s, {"mac_address"});
  s.mac_address = "52-54-00-00-00-01";
  ExpectInvalid(s, {"mac_address"});
  s = Spec();
  s.console_regex = "ready(";
  ExpectInvalid(s, {"console_regex"});
  s = Spec();
  s.tcp_port = 70000;
  ExpectInvalid(s, {"tcp_port 70000"});
  s = Spec();
  s.disks.push_back("");
  ExpectInvalid(s, {"disk 1"});
}

TEST(MachineSpecTest, DerivedMacIsStableLocalUnicastAndSpreads) {
  EXPECT_EQ(DeriveMac("web-1"), DeriveMac("web-1"));
  // A fixed value: changing the derivation would change every recovered machine's MAC.
  EXPECT_EQ(DeriveMac("web-1"), "52:54:00:b7:b7:1f");
  std::set<std::string> macs;
  for (int i = 0; i < 200; ++i) {
    std::string mac = DeriveMac("vm" + std::to_string(i));
    ASSERT_EQ(mac.size(), 17u);
    EXPECT_EQ(mac.substr(0, 9), "52:54:00:");
    int first = std::stoi(mac.substr(0, 2), nullptr, 16);
    EXPECT_EQ(first & 1, 0) << "unicast";
    EXPECT_EQ(first & 2, 2) << "locally administered";
    macs.insert(mac);
  }
  EXPECT_EQ(macs.size(), 200u);
  MachineSpec s = Spec();
  EXPECT_EQ(MacOf(s), DeriveMac("web-1"));
  s.mac_address = "52:54:00:AB:CD:EF";
  EXPECT_EQ(MacOf(s), "52:54:00:ab:cd:ef");
}

TEST(MachineSpecTest, ParsesCidr) {
  Ipv4Net n;
  ASSERT_TRUE(ParseCidr("10.0.2.0/24", &n));
  EXPECT_EQ(n.address, 0x0a000200u);
  EXPECT_EQ(n.prefix, 24);
  EXPECT_FALSE(ParseCidr("10.0.2.0/33", &n));
  EXPECT_FALSE(ParseCidr("10.0.2/24", &n));
  EXPECT_FALSE(ParseCidr("10.0.2.0/", &n));
}

}  // namespace
}  // namespace ferry::launch
