// The machine directory every launcher keeps its state in, so a restarted node finds its
// machines again (layout and the spec.json format: docs/launchers.md, "The machine
// directory"):
//   spec.json    MachineRecord: the spec and what the launcher chose (version 1)
//   running_ns   when the machine was first seen running with its probe ok (decimal ns)
//   console.log  the serial console (qemu) or the commands' output (exec)
// plus the launcher's own files (qemu: qmp.sock, qemu.pid, qemu.log).
//
// All file access goes through the given Env. Thread-compatible: calls for one directory
// must not overlap (the Launcher contract).
// Errors: kNotFound when the directory holds no spec.json; kDataLoss when spec.json is
// unreadable JSON or of an unknown version; the Env's errors otherwise.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "env/env.h"
#include "launch/launcher.h"

namespace ferry::launch {

struct MachineRecord {
  MachineSpec spec;
  std::string kind;         // the launcher that started it: qemu | exec | none
  std::string accelerator;  // qemu: kvm | tcg
  int host_port = 0;        // qemu user/isolated: the host port forwarded to spec.tcp_port
  int64_t started_ns = 0;
  int64_t stopped_ns = 0;   // exec/none: when Stop succeeded; 0 while it runs
  std::string failure;      // exec: why the start failed; "" otherwise
};

// MachineSpec <-> JSON (the "spec" object of spec.json; launch_tool reads the same).
nlohmann::json SpecToJson(const MachineSpec& spec);
// kInvalidArgument naming the field when a field has the wrong type.
Result<MachineSpec> SpecFromJson(const nlohmann::json& j);

Status WriteRecord(Env* env, const std::string& dir, const MachineRecord& record);
Result<MachineRecord> ReadRecord(Env* env, const std::string& dir);

// The first time the machine is seen running with its probe ok: records now_ns in running_ns
// and returns it; afterwards returns the recorded time. ClearRunning forgets it (a new launch).
Result<int64_t> NoteRunning(Env* env, const std::string& dir, int64_t now_ns);
Status ClearRunning(Env* env, const std::string& dir);
// The recorded time, or 0 when the machine was never seen running (with its probe ok).
int64_t RunningSince(Env* env, const std::string& dir);

// Appends text to DIR/console.log (created if missing).
Status AppendConsole(Env* env, const std::string& dir, std::string_view text);

// Up to max_bytes of DIR/console.log from offset; *next = offset + returned size. A missing
// console.log reads as empty. kNotFound when dir does not exist; kOutOfRange when offset is
// past the end (the console restarts with each launch).
Result<std::string> ReadConsole(Env* env, const std::string& dir, int64_t offset, int64_t max_bytes, int64_t* next);
// The last max_lines lines of a text file ("" when missing), for error messages.
std::string TailLines(Env* env, const std::string& path, int max_lines);

// Deletes dir and everything in it; ok when it does not exist.
Status RemoveTree(Env* env, const std::string& dir);

// dir as an absolute, lexically normal path (QEMU gets absolute paths; the identity check
// of a running QEMU compares them).
std::string AbsoluteDir(const std::string& dir);

}  // namespace ferry::launch
