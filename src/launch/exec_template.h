// The exec launcher's command templates: placeholders in an operator's shell command, and
// the same values as environment variables (docs/launchers.md, "exec").
//
// Placeholders: {name} {disks} {disk0} {disk1} ... {cpus} {memory_mib} {network}
// {network_mode} {bridge} {ip} {mac} {kernel} {initrd} {cmdline} {dir}. Each is replaced by
// its value shell-quoted ('...', a ' inside as '\''), so a value is always one word — except
// {disks}, which is each URI quoted, separated by spaces. `{{` is a literal `{`; `}` needs
// no escape. Any other `{` must open a known placeholder: a shell `${VAR}` is written
// `${{VAR}`.
//
// Environment: FERRY_MACHINE_NAME FERRY_DISKS (URIs separated by spaces) FERRY_DISK_COUNT
// FERRY_DISK0 ... FERRY_CPUS FERRY_MEMORY_MIB FERRY_NETWORK FERRY_NETWORK_MODE FERRY_BRIDGE
// FERRY_SUBNET FERRY_IP FERRY_MAC FERRY_KERNEL FERRY_INITRD FERRY_CMDLINE FERRY_MACHINE_DIR,
// unquoted. ({mac} and FERRY_MAC are the derived MAC when the spec has none.)
//
// Pure functions; thread-safe. Errors: kInvalidArgument naming the placeholder and the
// template (unknown placeholder, unclosed '{', {diskN} past the machine's disks).
#pragma once

#include <map>
#include <string>

#include "base/status.h"
#include "launch/launcher.h"

namespace ferry::launch {

// Checks a template without a machine: only known placeholders. what: "start_command", ...
Status CheckTemplate(const std::string& what, const std::string& tmpl);

// The command for spec in dir (absolute).
Result<std::string> ExpandTemplate(const std::string& what, const std::string& tmpl, const MachineSpec& spec,
                                   const std::string& dir);

// The environment variables for spec in dir.
std::map<std::string, std::string> TemplateEnvironment(const MachineSpec& spec, const std::string& dir);

// "it's" -> 'it'\''s'
std::string ShellQuote(const std::string& value);

}  // namespace ferry::launch
