// launch_tool: drives one launcher from the command line, for tests/launch_qemu_test.sh.
// Not installed. Prints one JSON object per call; exit status 0 ok, 1 error, 2 usage.
//   launch_tool [--kind K] [--accel A] [--firmware F] [--qemu BIN] start DIR SPEC.json
//   launch_tool [...] status DIR
//   launch_tool [...] stop DIR [--force] [--timeout-ms N]
//   launch_tool [...] console DIR [OFFSET]
//   launch_tool [...] remove DIR
// SPEC.json is a MachineSpec as in spec.json's "spec" object (docs/launchers.md).
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "env/env.h"
#include "launch/launcher.h"
#include "launch/machine_dir.h"

namespace {

using ferry::launch::Launcher;
using nlohmann::json;

int Usage() {
  std::cerr << "usage: launch_tool [--kind K] [--accel A] [--firmware F] [--qemu BIN]\n"
               "                   start DIR SPEC.json | status DIR | stop DIR [--force] [--timeout-ms N]\n"
               "                   | console DIR [OFFSET] | remove DIR\n";
  return 2;
}

int Print(const json& j, int code) {
  std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";  // consoles need not be UTF-8
  return code;
}

int Fail(const ferry::Status& s) {
  return Print({{"ok", false}, {"code", std::string(ferry::CodeName(s.code()))}, {"message", std::string(s.message())}}, 1);
}

}  // namespace

int main(int argc, char** argv) {
  ferry::launch::LauncherConfig config;
  std::vector<std::string> args;
  bool force = false;
  int64_t timeout_ms = 30000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--kind") config.kind = value();
    else if (a == "--accel") config.accelerator = value();
    else if (a == "--firmware") config.firmware = value();
    else if (a == "--qemu") config.qemu_binary = value();
    else if (a == "--force") force = true;
    else if (a == "--timeout-ms") timeout_ms = std::stoll(value());
    else args.push_back(a);
  }
  if (args.size() < 2) return Usage();
  const std::string& cmd = args[0];
  const std::string& dir = args[1];
  auto launcher = ferry::launch::MakeLauncher(config);
  if (!launcher.ok()) return Fail(launcher.status());
  Launcher& l = **launcher;

  if (cmd == "start") {
    if (args.size() != 3) return Usage();
    auto text = ferry::ReadFileToString(ferry::Env::Posix(), args[2]);
    if (!text.ok()) return Fail(text.status());
    json j = json::parse(*text, nullptr, false);
    if (j.is_discarded()) return Fail(ferry::InvalidArgument(args[2] + ": not JSON"));
    auto spec = ferry::launch::SpecFromJson(j);
    if (!spec.ok()) return Fail(spec.status());
    ferry::Status s = l.Start(*spec, dir);
    return s.ok() ? Print({{"ok", true}}, 0) : Fail(s);
  }
  if (cmd == "status") {
    auto st = l.Status(dir);
    if (!st.ok()) return Fail(st.status());
    return Print({{"ok", true},
                  {"state", ferry::launch::PowerStateName(st->state)},
                  {"detail", st->detail},
                  {"probe_ok", st->probe_ok},
                  {"probe_detail", st->probe_detail},
                  {"probe_address", st->probe_address},
                  {"accelerator", st->accelerator},
                  {"started_ns", st->started_ns},
                  {"running_ns", st->running_ns}},
                 0);
  }
  if (cmd == "stop") {
    ferry::Status s = l.Stop(dir, !force, timeout_ms);
    return s.ok() ? Print({{"ok", true}}, 0) : Fail(s);
  }
  if (cmd == "remove") {
    ferry::Status s = l.Remove(dir);
    return s.ok() ? Print({{"ok", true}}, 0) : Fail(s);
  }
  if (cmd == "console") {
    int64_t offset = args.size() > 2 ? std::stoll(args[2]) : 0, next = 0;
    auto text = l.Console(dir, offset, 1 << 20, &next);
    if (!text.ok()) return Fail(text.status());
    return Print({{"ok", true}, {"next", next}, {"text", *text}}, 0);
  }
  return Usage();
}
