#include "launch/exec_template.h"

#include <cctype>
#include <functional>

#include "launch/machine_spec.h"

namespace ferry::launch {

namespace {

const char* const kNames[] = {"name",    "disks", "cpus",   "memory_mib", "network", "network_mode", "bridge",
                              "ip",      "mac",   "kernel", "initrd",     "cmdline", "dir"};

// {diskN}: N as a number, or -1 when name is no disk placeholder.
long DiskIndex(const std::string& name) {
  if (name.size() < 5 || name.compare(0, 4, "disk") != 0 || name.size() > 10) return -1;
  for (size_t i = 4; i < name.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  }
  if (name.size() > 5 && name[4] == '0') return -1;  // disk01: no
  return std::stol(name.substr(4));
}

bool Known(const std::string& name) {
  for (const char* n : kNames) {
    if (name == n) return true;
  }
  return DiskIndex(name) >= 0;
}

// Walks tmpl, calling value(NAME) for each placeholder; the result with the values inserted.
Result<std::string> Walk(const std::string& what, const std::string& tmpl,
                         const std::function<Result<std::string>(const std::string&)>& value) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] != '{') {
      out += tmpl[i];
      continue;
    }
    if (i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t close = tmpl.find('}', i + 1);
    if (close == std::string::npos) {
      return InvalidArgument(what + ": '{' at position " + std::to_string(i) +
                             " is never closed (write '{{' for a literal brace): " + tmpl);
    }
    const std::string name = tmpl.substr(i + 1, close - i - 1);
    if (!Known(name)) {
      return InvalidArgument(what + ": unknown placeholder {" + name +
                             "} (known: {name} {disks} {disk0}.. {cpus} {memory_mib} {network} {network_mode} {bridge} "
                             "{ip} {mac} {kernel} {initrd} {cmdline} {dir}; '{{' is a literal brace): " + tmpl);
    }
    ASSIGN_OR_RETURN(std::string v, value(name));
    out += v;
    i = close;
  }
  return out;
}

}  // namespace

std::string ShellQuote(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

Status CheckTemplate(const std::string& what, const std::string& tmpl) {
  return Walk(what, tmpl, [](const std::string&) -> Result<std::string> { return std::string(); }).status();
}

Result<std::string> ExpandTemplate(const std::string& what, const std::string& tmpl, const MachineSpec& spec,
                                   const std::string& dir) {
  const auto env = TemplateEnvironment(spec, dir);
  return Walk(what, tmpl, [&](const std::string& name) -> Result<std::string> {
    if (name == "disks") {
      std::string all;
      for (const auto& d : spec.disks) all += (all.empty() ? "" : " ") + ShellQuote(d);
      return all;  // no disks: no words
    }
    if (long i = DiskIndex(name); i >= 0) {
      if (static_cast<size_t>(i) >= spec.disks.size()) {
        return InvalidArgument(what + ": {" + name + "} but machine " + spec.name + " has " +
                               std::to_string(spec.disks.size()) + " disk(s); use {disks} for any number");
      }
      return ShellQuote(spec.disks[static_cast<size_t>(i)]);
    }
    std::string var = name == "name" ? "FERRY_MACHINE_NAME" : name == "dir" ? "FERRY_MACHINE_DIR" : "FERRY_" + name;
    for (char& c : var) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return ShellQuote(env.at(var));
  });
}

std::map<std::string, std::string> TemplateEnvironment(const MachineSpec& spec, const std::string& dir) {
  std::map<std::string, std::string> e = {
      {"FERRY_MACHINE_NAME", spec.name},
      {"FERRY_DISK_COUNT", std::to_string(spec.disks.size())},
      {"FERRY_CPUS", std::to_string(spec.cpus)},
      {"FERRY_MEMORY_MIB", std::to_string(spec.memory_mib)},
      {"FERRY_NETWORK", spec.network.name},
      {"FERRY_NETWORK_MODE", spec.network.mode},
      {"FERRY_BRIDGE", spec.network.bridge},
      {"FERRY_SUBNET", spec.network.subnet},
      {"FERRY_IP", spec.ip_address},
      {"FERRY_MAC", MacOf(spec)},
      {"FERRY_KERNEL", spec.kernel},
      {"FERRY_INITRD", spec.initrd},
      {"FERRY_CMDLINE", spec.cmdline},
      {"FERRY_MACHINE_DIR", dir},
  };
  std::string all;
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    e["FERRY_DISK" + std::to_string(i)] = spec.disks[i];
    all += (i ? " " : "") + spec.disks[i];
  }
  e["FERRY_DISKS"] = all;
  return e;
}

}  // namespace ferry::launch
