#include "launch/qemu_argv.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "env/scratch_dir_test_util.h"
#include "launch/accelerator.h"
#include "launch/machine_spec.h"

namespace ferry::launch {
namespace {

MachineSpec Spec() {
  MachineSpec s;
  s.name = "db-2";
  s.disks = {"nbd+unix:///boot?socket=/run/ferry/n.sock", "nbd://10.1.1.1:10809/data"};
  s.cpus = 2;
  s.memory_mib = 1024;
  s.network.name = "default";
  return s;
}

std::vector<std::string> Argv(const MachineSpec& s, const std::string& accel = "tcg", int port = 0,
                              LauncherConfig config = {}) {
  auto a = QemuArgv(config, s, "/var/lib/ferry/machines/db-2", accel, port);
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  return a.ok() ? *a : std::vector<std::string>{};
}

// The value after flag (its first occurrence), or "<absent>".
std::string After(const std::vector<std::string>& a, const std::string& flag, int nth = 0) {
  for (size_t i = 0; i + 1 < a.size(); ++i) {
    if (a[i] == flag && nth-- == 0) return a[i + 1];
  }
  return "<absent>";
}

bool Has(const std::vector<std::string>& a, const std::string& word) {
  return std::find(a.begin(), a.end(), word) != a.end();
}

TEST(QemuArgvTest, BaseMachineTcg) {
  auto a = Argv(Spec());
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a[0], "qemu-system-x86_64");
  EXPECT_EQ(After(a, "-name"), "db-2");
  EXPECT_TRUE(Has(a, "-nodefaults"));
  EXPECT_TRUE(Has(a, "-no-user-config"));
  EXPECT_EQ(After(a, "-machine"), "pc");
  EXPECT_EQ(After(a, "-accel"), "tcg");
  EXPECT_FALSE(Has(a, "-cpu")) << "-cpu host needs KVM";
  EXPECT_EQ(After(a, "-smp"), "2");
  EXPECT_EQ(After(a, "-m"), "1024");
  EXPECT_EQ(After(a, "-display"), "none");
  EXPECT_EQ(After(a, "-serial"), "file:/var/lib/ferry/machines/db-2/console.log");
  EXPECT_EQ(After(a, "-qmp"), "unix:/var/lib/ferry/machines/db-2/qmp.sock,server=on,wait=off");
  EXPECT_EQ(After(a, "-pidfile"), "/var/lib/ferry/machines/db-2/qemu.pid");
  EXPECT_FALSE(Has(a, "-bios"));
  EXPECT_FALSE(Has(a, "-no-reboot")) << "reboots stay reboots; a guest power-off ends QEMU by default";
  EXPECT_FALSE(Has(a, "-kernel"));
  // Boot disk first, raw over NBD, no host cache.
  EXPECT_EQ(After(a, "-drive", 0), "file=nbd+unix:///boot?socket=/run/ferry/n.sock,file.reconnect-delay=60,format=raw,if=virtio,cache=none");
  EXPECT_EQ(After(a, "-drive", 1), "file=nbd://10.1.1.1:10809/data,file.reconnect-delay=60,format=raw,if=virtio,cache=none");
}

TEST(QemuArgvTest, KvmAddsHostCpuAndFirmwareAndKernel) {
  MachineSpec s = Spec();
  s.kernel = "/boot/vmlinuz";
  s.initrd = "/boot/initrd.img";
  s.cmdline = "console=ttyS0 root=/dev/vda1";
  LauncherConfig c;
  c.qemu_binary = "/opt/qemu/bin/qemu-system-x86_64";
  c.firmware = "/usr/share/qemu/qboot.rom";
  auto a = Argv(s, "kvm", 0, c);
  EXPECT_EQ(a[0], "/opt/qemu/bin/qemu-system-x86_64");
  EXPECT_EQ(After(a, "-accel"), "kvm");
  EXPECT_EQ(After(a, "-cpu"), "host");
  EXPECT_EQ(After(a, "-bios"), "/usr/share/qemu/qboot.rom");
  EXPECT_EQ(After(a, "-kernel"), "/boot/vmlinuz");
  EXPECT_EQ(After(a, "-initrd"), "/boot/initrd.img");
  EXPECT_EQ(After(a, "-append"), "console=ttyS0 root=/dev/vda1");
}

TEST(QemuArgvTest, CommaInADiskUriIsDoubled) {
  MachineSpec s = Spec();
  s.disks = {"nbd://h:1/a,b"};
  EXPECT_EQ(After(Argv(s), "-drive"), "file=nbd://h:1/a,,b,file.reconnect-delay=60,format=raw,if=virtio,cache=none");
}

TEST(QemuArgvTest, UserNetworkWithAddressAndForwardedProbePort) {
  MachineSpec s = Spec();
  s.network.subnet = "192.168.77.0/24";
  s.ip_address = "192.168.77.40";
  s.tcp_port = 22;
  auto a = Argv(s, "tcg", 40022);
  EXPECT_EQ(After(a, "-netdev"),
            "user,id=n0,net=192.168.77.0/24,dhcpstart=192.168.77.40,hostfwd=tcp:127.0.0.1:40022-192.168.77.40:22");
  EXPECT_EQ(After(a, "-device"), "virtio-net-pci,netdev=n0,mac=" + DeriveMac("db-2") + ",romfile=");
  EXPECT_FALSE(Has(a, "-nic"));
  EXPECT_EQ(QemuProbeAddress(s, 40022), "127.0.0.1:40022");
}

TEST(QemuArgvTest, UserNetworkDefaultsWithoutAddressOrProbe) {
  MachineSpec s = Spec();
  s.mac_address = "52:54:00:0A:0B:0C";
  auto a = Argv(s);
  EXPECT_EQ(After(a, "-netdev"), "user,id=n0,net=10.0.2.0/24");
  EXPECT_EQ(After(a, "-device"), "virtio-net-pci,netdev=n0,mac=52:54:00:0a:0b:0c,romfile=");
  EXPECT_EQ(QemuProbeAddress(s, 0), "");
  // A probe without an address forwards to the DHCP server's first address (empty guest).
  s.tcp_port = 7;
  EXPECT_EQ(After(Argv(s, "tcg", 5000), "-netdev"), "user,id=n0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:5000-:7");
}

TEST(QemuArgvTest, IsolatedNetworkIsRestrictedButForwards) {
  MachineSpec s = Spec();
  s.network = {"isolated", "isolated", "", "10.99.0.0/16"};
  s.ip_address = "10.99.3.4";
  s.tcp_port = 80;
  auto a = Argv(s, "tcg", 41000);
  EXPECT_EQ(After(a, "-netdev"),
            "user,id=n0,net=10.99.0.0/16,dhcpstart=10.99.3.4,restrict=on,hostfwd=tcp:127.0.0.1:41000-10.99.3.4:80");
  EXPECT_EQ(QemuProbeAddress(s, 41000), "127.0.0.1:41000");
}

TEST(QemuArgvTest, BridgeAndNone) {
  MachineSpec s = Spec();
  s.network = {"prod", "bridge", "br-prod", ""};
  auto a = Argv(s);
  EXPECT_EQ(After(a, "-netdev"), "bridge,id=n0,br=br-prod");
  EXPECT_EQ(After(a, "-device"), "virtio-net-pci,netdev=n0,mac=" + DeriveMac("db-2") + ",romfile=");
  s.ip_address = "172.20.0.5";
  s.tcp_port = 443;
  EXPECT_EQ(QemuProbeAddress(s, 0), "172.20.0.5:443");  // no forwarding: the LAN address

  s = Spec();
  s.network = {"off", "none", "", ""};
  a = Argv(s);
  EXPECT_EQ(After(a, "-nic"), "none");
  EXPECT_FALSE(Has(a, "-netdev"));
  EXPECT_FALSE(Has(a, "-device"));
}

TEST(QemuArgvTest, RefusesWhatQemuCannotRun) {
  auto code = [](const MachineSpec& s, const std::string& dir = "/m", const std::string& accel = "tcg", int port = 9) {
    auto a = QemuArgv({}, s, dir, accel, port);
    return a.ok() ? std::string("ok") : a.status().ToString();
  };
  MachineSpec s = Spec();
  s.disks.clear();
  EXPECT_NE(code(s).find("no disk to boot from and no kernel"), std::string::npos) << code(s);
  s.kernel = "/k";
  EXPECT_EQ(code(s), "ok");
  s = Spec();
  s.cmdline = "quiet";
  EXPECT_NE(code(s).find("need a kernel"), std::string::npos);
  s = Spec();
  s.network = {"off", "none", "", ""};
  s.tcp_port = 22;
  EXPECT_NE(code(s).find("needs a network"), std::string::npos);
  s = Spec();
  s.network = {"prod", "bridge", "br0", ""};
  s.tcp_port = 22;
  EXPECT_NE(code(s).find("needs the machine's ip_address"), std::string::npos);
  s = Spec();
  EXPECT_NE(code(s, "/a,b").find("','"), std::string::npos);
  EXPECT_NE(code(s, "/" + std::string(100, 'x')).find("too long"), std::string::npos);
  EXPECT_NE(code(s, "/m", "hvf").find("neither kvm nor tcg"), std::string::npos);
  s.tcp_port = 22;
  EXPECT_NE(code(s, "/m", "tcg", 0).find("no host port"), std::string::npos);
  s.cpus = 0;
  EXPECT_TRUE(code(s).rfind("InvalidArgument", 0) == 0) << code(s);  // ValidateSpec's
}

TEST(AcceleratorTest, AutoUsesKvmOnlyWhenUsable) {
  EXPECT_EQ(*ChooseAccelerator("auto", true, ""), "kvm");
  EXPECT_EQ(*ChooseAccelerator("auto", false, "/dev/kvm: No such file"), "tcg");
  EXPECT_EQ(*ChooseAccelerator("tcg", true, ""), "tcg");
  EXPECT_EQ(*ChooseAccelerator("kvm", true, ""), "kvm");
  auto k = ChooseAccelerator("kvm", false, "/dev/kvm: Permission denied");
  ASSERT_EQ(k.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(k.status().message().find("Permission denied"), std::string::npos);
  EXPECT_EQ(ChooseAccelerator("hvf", true, "").status().code(), Code::kInvalidArgument);
}

TEST(AcceleratorTest, KvmProbeAgreesWithTheDevice) {
  // Whatever this host has: usable means /dev/kvm opened read-write.
  std::string why;
  bool usable = KvmUsable(&why);
  if (!usable) {
    EXPECT_NE(why.find("/dev/kvm"), std::string::npos) << why;
  }
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    EXPECT_FALSE(usable);
  }
}

// A QEMU that cannot run KVM (here: a stand-in that fails as QEMU does when the host refuses
// the vCPU's MSRs) makes KVM unusable even where /dev/kvm answers, and the reason says so.
TEST(AcceleratorTest, KvmThatQemuCannotRunIsNotUsable) {
  test::ScratchDir dir("ferry-kvm-probe");
  ASSERT_FALSE(dir.path().empty());
  const std::string fake = dir / "qemu";
  {
    std::FILE* f = std::fopen(fake.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("#!/bin/sh\necho 'error: failed to set MSR 0x10a' >&2\nexit 134\n", f);
    std::fclose(f);
  }
  ASSERT_EQ(::chmod(fake.c_str(), 0755), 0);
  std::string why;
  EXPECT_FALSE(KvmUsable(&why, fake));
  std::string device_why;
  if (KvmUsable(&device_why)) {  // the device answers: the refusal is QEMU's, named
    EXPECT_NE(why.find("failed to set MSR"), std::string::npos) << why;
    EXPECT_NE(why.find("exited with 134"), std::string::npos) << why;
  }
}

}  // namespace
}  // namespace ferry::launch
