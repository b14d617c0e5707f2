// Processes: the only code that forks, execs, signals or inspects other processes.
//
// RunCommand runs an operator's shell command to completion (hooks, the exec launcher's
// templates): `/bin/sh -c COMMAND` in its own process group, stdin /dev/null, stdout and
// stderr captured together; at the timeout the whole group is killed, so a hung command
// never blocks its caller. SpawnDetached starts a long-lived program (QEMU) in a session of
// its own that outlives the caller: it is reparented to init at once, so the caller never
// has to reap it, and a caller restart does not touch it.
//
// Thread-safety: all functions may be called from several threads at once (fork is done
// with async-signal-safe calls only between fork and exec).
//
// Errors: kIoError when the OS refused to create the pipe or the process (errno text);
// kNotFound when the program to spawn is not in PATH (or not executable).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace ferry {

// How a command run by RunCommand ended.
struct CommandResult {
  int exit_code = -1;      // its exit status; -1 when a signal or the timeout ended it
  int term_signal = 0;     // the signal that killed it, if any
  bool timed_out = false;  // ran past the timeout; its process group was killed
  std::string output;      // stdout and stderr interleaved, the first 64 KiB

  bool succeeded() const { return exit_code == 0; }
  // "exited with 3", "was killed by signal 9", "ran past its timeout of 500 ms and was killed"
  std::string Describe(int64_t timeout_ms) const;
  // The last ~400 bytes of the output (prefixed "…" when cut), for error messages.
  std::string OutputTail() const;
};

// Runs `/bin/sh -c command` with the caller's environment plus env, waits up to timeout_ms.
// Returns the result whatever the command's exit; an error only when it could not be started.
Result<CommandResult> RunCommand(const std::string& command, const std::map<std::string, std::string>& env,
                                 int64_t timeout_ms);

// A finished command as a Status, for callers that only care whether it worked:
// ok on exit 0; kAborted after the timeout; kFailedPrecondition otherwise. The message is
// "WHAT `COMMAND` exited with 3: OUTPUT TAIL".
Status CommandStatus(const std::string& what, const std::string& command, const CommandResult& r,
                     int64_t timeout_ms);

// The program's path: name itself when it has a '/', else the first executable in PATH.
Result<std::string> FindProgram(const std::string& name);

struct SpawnedProcess {
  int pid = 0;
  bool exited = false;   // it ended while SpawnDetached watched it
  int exit_code = -1;    // when exited: its exit status, or -1 if a signal ended it
  int term_signal = 0;   // when exited by a signal
};

// Starts argv (argv[0] looked up with FindProgram) in a new session with stdin /dev/null and
// stdout and stderr appended to log_path, then watches it for up to watch_ms: returns as soon
// as ready() is true (polled every 20 ms), or it exited (exited = true with its status), or
// watch_ms passed (still running, not ready). The process is never the caller's child.
Result<SpawnedProcess> SpawnDetached(const std::vector<std::string>& argv, const std::string& log_path,
                                     int64_t watch_ms, const std::function<bool()>& ready);

// True when pid names a live process (not a zombie waiting to be reaped).
bool ProcessAlive(int pid);
// The argv of a live process (from /proc/PID/cmdline); kNotFound when there is none.
Result<std::vector<std::string>> ProcessCommandLine(int pid);
// Sends sig to pid; kNotFound when there is no such process.
Status SignalProcess(int pid, int sig);

}  // namespace ferry
