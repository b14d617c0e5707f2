#include "launch/exec_template.h"

#include <gtest/gtest.h>

#include "env/process.h"
#include "launch/machine_spec.h"

namespace ferry::launch {
namespace {

MachineSpec Spec() {
  MachineSpec s;
  s.name = "app-3";
  s.disks = {"nbd://10.0.0.1:10809/app-3-boot", "nbd://10.0.0.1:10809/app 3 data"};
  s.cpus = 4;
  s.memory_mib = 2048;
  s.network = {"prod", "bridge", "br-prod", ""};
  s.ip_address = "172.16.1.30";
  s.kernel = "/k";
  s.cmdline = "root=/dev/vda1 it's";
  return s;
}

std::string Expand(const std::string& t, const MachineSpec& s = Spec()) {
  auto r = ExpandTemplate("start_command", t, s, "/var/m/app-3");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : "";
}

TEST(ExecTemplateTest, ShellQuote) {
  EXPECT_EQ(ShellQuote("plain"), "'plain'");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote("$(rm -rf /) `x` \"y\""), "'$(rm -rf /) `x` \"y\"'");
}

TEST(ExecTemplateTest, ExpandsEveryPlaceholderQuoted) {
  EXPECT_EQ(Expand("virt {name} {cpus} {memory_mib} {network} {network_mode} {bridge} {ip} {dir}"),
            "virt 'app-3' '4' '2048' 'prod' 'bridge' 'br-prod' '172.16.1.30' '/var/m/app-3'");
  EXPECT_EQ(Expand("x {disk0} {disk1}"), "x 'nbd://10.0.0.1:10809/app-3-boot' 'nbd://10.0.0.1:10809/app 3 data'");
  EXPECT_EQ(Expand("x {disks}"), "x 'nbd://10.0.0.1:10809/app-3-boot' 'nbd://10.0.0.1:10809/app 3 data'");
  EXPECT_EQ(Expand("{mac}"), "'" + DeriveMac("app-3") + "'");
  EXPECT_EQ(Expand("{kernel} {initrd} {cmdline}"), "'/k' '' 'root=/dev/vda1 it'\\''s'");
  MachineSpec none = Spec();
  none.disks.clear();
  EXPECT_EQ(Expand("x {disks} y", none), "x  y");
}

TEST(ExecTemplateTest, DoubleBraceIsALiteralBrace) {
  EXPECT_EQ(Expand("echo ${{FERRY_MACHINE_NAME} {{{name}}"), "echo ${FERRY_MACHINE_NAME} {'app-3'}");
  EXPECT_EQ(Expand("a}b"), "a}b");
}

TEST(ExecTemplateTest, UnknownPlaceholderIsNamed) {
  Status s = CheckTemplate("launcher.start_command", "virsh start {domain}");
  ASSERT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("unknown placeholder {domain}"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("launcher.start_command"), std::string::npos) << s.ToString();
  // A shell brace written the shell's way is a placeholder too: refused, with the hint.
  s = CheckTemplate("launcher.stop_command", "echo ${HOME}");
  ASSERT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("{HOME}"), std::string::npos);
  EXPECT_NE(s.message().find("'{{'"), std::string::npos);
  s = CheckTemplate("launcher.stop_command", "echo {name");
  ASSERT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("never closed"), std::string::npos);
  EXPECT_TRUE(CheckTemplate("t", "x {disk0} {disk12} {disks} {{").ok());
  EXPECT_EQ(CheckTemplate("t", "x {disk01}").code(), Code::kInvalidArgument);
  EXPECT_EQ(CheckTemplate("t", "x {disk}").code(), Code::kInvalidArgument);
}

TEST(ExecTemplateTest, DiskPastTheMachinesDisksIsRefused) {
  auto r = ExpandTemplate("start_command", "x {disk2}", Spec(), "/d");
  ASSERT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("{disk2}"), std::string::npos);
  EXPECT_NE(r.status().message().find("2 disk(s)"), std::string::npos);
}

TEST(ExecTemplateTest, QuotingSurvivesARealShell) {
  // The expanded words reach the command exactly, hostile characters included.
  MachineSpec s = Spec();
  s.name = "q";
  s.cmdline = "a'b \"c\" $(echo no) `echo no` ; echo no";
  auto cmd = ExpandTemplate("t", "printf '%s|' {cmdline} {disks}", s, "/d");
  ASSERT_TRUE(cmd.ok());
  auto r = RunCommand(*cmd, {}, 5000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->output, s.cmdline + "|" + s.disks[0] + "|" + s.disks[1] + "|");
}

TEST(ExecTemplateTest, Environment) {
  auto e = TemplateEnvironment(Spec(), "/var/m/app-3");
  EXPECT_EQ(e["FERRY_MACHINE_NAME"], "app-3");
  EXPECT_EQ(e["FERRY_DISKS"], "nbd://10.0.0.1:10809/app-3-boot nbd://10.0.0.1:10809/app 3 data");
  EXPECT_EQ(e["FERRY_DISK_COUNT"], "2");
  EXPECT_EQ(e["FERRY_DISK1"], "nbd://10.0.0.1:10809/app 3 data");
  EXPECT_EQ(e["FERRY_CPUS"], "4");
  EXPECT_EQ(e["FERRY_MEMORY_MIB"], "2048");
  EXPECT_EQ(e["FERRY_NETWORK"], "prod");
  EXPECT_EQ(e["FERRY_NETWORK_MODE"], "bridge");
  EXPECT_EQ(e["FERRY_BRIDGE"], "br-prod");
  EXPECT_EQ(e["FERRY_IP"], "172.16.1.30");
  EXPECT_EQ(e["FERRY_MAC"], DeriveMac("app-3"));
  EXPECT_EQ(e["FERRY_CMDLINE"], "root=/dev/vda1 it's");
  EXPECT_EQ(e["FERRY_MACHINE_DIR"], "/var/m/app-3");
}

}  // namespace
}  // namespace ferry::launch
