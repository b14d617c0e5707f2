#include "env/process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace ferry {

namespace {

using Clock = std::chrono::steady_clock;

Status Errno(const std::string& what) { return IoError(what + ": " + std::strerror(errno)); }

int64_t MillisLeft(Clock::time_point deadline) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
}

// In a forked child before exec: signals the parent blocks or ignores must not leak into the
// program (an ignored SIGPIPE survives exec and breaks shell pipelines). Async-signal-safe.
void ResetSignals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) sigaction(s, &dfl, nullptr);  // fails harmlessly for KILL/STOP
}

// Reads a whole small file of /proc with plain syscalls (not an Env file: it is no data).
bool ReadProcFile(const std::string& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  out->clear();
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

// A message from the spawning processes to the caller of SpawnDetached.
struct SpawnMessage {
  int32_t kind;   // one of the k* below
  int32_t value;  // pid, errno or wait status
};
constexpr int32_t kMsgPid = 1, kMsgExecErrno = 2, kMsgForkErrno = 3, kMsgExit = 4;

void SendMessage(int fd, int32_t kind, int32_t value) {
  SpawnMessage m{kind, value};
  ssize_t w;
  do {
    w = ::write(fd, &m, sizeof m);  // smaller than PIPE_BUF: atomic
  } while (w < 0 && errno == EINTR);
}

}  // namespace

std::string CommandResult::Describe(int64_t timeout_ms) const {
  if (timed_out) return "ran past its timeout of " + std::to_string(timeout_ms) + " ms and was killed";
  if (exit_code >= 0) return "exited with " + std::to_string(exit_code);
  return "was killed by signal " + std::to_string(term_signal);
}

std::string CommandResult::OutputTail() const {
  constexpr size_t kTail = 400;
  return output.size() <= kTail ? output : "…" + output.substr(output.size() - kTail);
}

Result<CommandResult> RunCommand(const std::string& command, const std::map<std::string, std::string>& env,
                                 int64_t timeout_ms) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Errno("pipe");
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = fork();
  if (pid < 0) {
    Status s = Errno("fork");
    close(fds[0]);
    close(fds[1]);
    return s;
  }
  if (pid == 0) {
    setpgid(0, 0);
    ResetSignals();
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    execve("/bin/sh", const_cast<char* const*>(argv), envp.data());
    _exit(127);
  }
  close(fds[1]);
  setpgid(pid, pid);  // also here: the child may not have run yet when we kill its group
  CommandResult r;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int64_t left = MillisLeft(deadline);
    if (left <= 0) {
      r.timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    char buf[4096];
    ssize_t got = read(fds[0], buf, sizeof buf);
    if (got <= 0) break;  // EOF: the command (and its children holding the pipe) are done
    if (r.output.size() < (64u << 10)) r.output.append(buf, static_cast<size_t>(got));
  }
  int status = 0;
  if (!r.timed_out) {
    // The pipe closed; wait for the exit, still within the deadline.
    for (;;) {
      pid_t w = waitpid(pid, &status, WNOHANG);
      if (w == pid) break;
      if (Clock::now() >= deadline) {
        r.timed_out = true;
        break;
      }
      usleep(5000);
    }
  }
  if (r.timed_out) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  close(fds[0]);
  if (!r.timed_out) {
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r.term_signal = WTERMSIG(status);
  }
  return r;
}

Status CommandStatus(const std::string& what, const std::string& command, const CommandResult& r,
                     int64_t timeout_ms) {
  if (r.succeeded()) return Status::Ok();
  std::string m = what + " `" + command + "` " + r.Describe(timeout_ms);
  if (r.timed_out) return Aborted(m);
  return FailedPrecondition(m + (r.output.empty() ? "" : ": " + r.OutputTail()));
}

Result<std::string> FindProgram(const std::string& name) {
  if (name.empty()) return NotFound("no program named");
  if (name.find('/') != std::string::npos) {
    if (access(name.c_str(), X_OK) == 0) return name;
    return NotFound(name + ": " + std::strerror(errno));
  }
  const char* path_env = getenv("PATH");
  std::string path = path_env && *path_env ? path_env : "/usr/local/bin:/usr/bin:/bin";
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(begin, end - begin);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    begin = end + 1;
  }
  return NotFound(name + " is not in PATH (" + path + ")");
}

Result<SpawnedProcess> SpawnDetached(const std::vector<std::string>& argv, const std::string& log_path,
                                     int64_t watch_ms, const std::function<bool()>& ready) {
  if (argv.empty()) return InvalidArgument("SpawnDetached: empty argv");
  ASSIGN_OR_RETURN(std::string program, FindProgram(argv[0]));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return Errno("open " + log_path);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int report[2] = {-1, -1}, release[2] = {-1, -1};  // spawners -> caller; caller -> watcher
  if (null_fd < 0 || pipe2(report, O_CLOEXEC) != 0 || pipe2(release, O_CLOEXEC) != 0) {
    Status s = Errno("open /dev/null or pipe");
    for (int fd : {log_fd, null_fd, report[0], report[1], release[0], release[1]}) {
      if (fd >= 0) close(fd);
    }
    return s;
  }
  // The watcher: a child in a new session that forks the program, reports its pid and, until
  // released, its early exit. When the watcher exits the program is reparented to init.
  pid_t watcher = fork();
  if (watcher == 0) {
    close(report[0]);
    close(release[1]);
    setsid();
    pid_t child = fork();
    if (child == 0) {
      ResetSignals();
      dup2(null_fd, 0);
      dup2(log_fd, 1);
      dup2(log_fd, 2);
      close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);  // no descriptor of the caller leaks into it
      execv(program.c_str(), args.data());
      SendMessage(report[1], kMsgExecErrno, errno);
      _exit(127);
    }
    if (child < 0) {
      SendMessage(report[1], kMsgForkErrno, errno);
      _exit(1);
    }
    SendMessage(report[1], kMsgPid, child);
    for (;;) {
      int st = 0;
      if (waitpid(child, &st, WNOHANG) == child) {
        SendMessage(report[1], kMsgExit, st);
        _exit(0);
      }
      pollfd p{release[0], POLLIN, 0};
      int n = poll(&p, 1, 20);
      if (n > 0 || (n < 0 && errno != EINTR)) _exit(0);  // released (EOF) or broken
    }
  }
  Status fork_error = watcher < 0 ? Errno("fork") : Status::Ok();
  close(report[1]);
  close(release[0]);
  close(log_fd);
  close(null_fd);
  if (!fork_error.ok()) {
    close(report[0]);
    close(release[1]);
    return fork_error;
  }

  SpawnedProcess out;
  Status error;
  const auto deadline = Clock::now() + std::chrono::milliseconds(std::max<int64_t>(watch_ms, 0));
  // The pid arrives within milliseconds; give it 5 s even when watch_ms is shorter.
  const auto pid_deadline = Clock::now() + std::chrono::milliseconds(std::max<int64_t>(watch_ms, 5000));
  for (;;) {
    if (out.pid > 0 && ready && ready()) break;
    const auto now = Clock::now();
    if (out.pid > 0 && now >= deadline) break;
    if (out.pid == 0 && now >= pid_deadline) {
      error = IoError("spawn of " + program + ": no pid reported within 5 s");
      break;
    }
    pollfd p{report[0], POLLIN, 0};
    int n = poll(&p, 1, 20);
    if (n < 0 && errno != EINTR) {
      error = Errno("poll");
      break;
    }
    if (n <= 0) continue;
    SpawnMessage m{};
    ssize_t got = read(report[0], &m, sizeof m);
    if (got == 0) {  // the watcher is gone: nothing more to learn
      if (out.pid == 0) error = IoError("spawn of " + program + " failed before it reported a pid");
      break;
    }
    if (got != static_cast<ssize_t>(sizeof m)) continue;
    if (m.kind == kMsgPid) {
      out.pid = m.value;
    } else if (m.kind == kMsgExecErrno) {
      errno = m.value;
      error = m.value == ENOENT || m.value == EACCES ? NotFound("exec " + program + ": " + std::strerror(m.value))
                                                     : Errno("exec " + program);
      break;
    } else if (m.kind == kMsgForkErrno) {
      errno = m.value;
      error = Errno("fork");
      break;
    } else if (m.kind == kMsgExit) {
      out.exited = true;
      if (WIFEXITED(m.value)) out.exit_code = WEXITSTATUS(m.value);
      if (WIFSIGNALED(m.value)) out.term_signal = WTERMSIG(m.value);
      break;
    }
  }
  close(release[1]);  // releases the watcher
  close(report[0]);
  int st;
  while (waitpid(watcher, &st, 0) < 0 && errno == EINTR) {
  }
  if (!error.ok()) return error;
  return out;
}

bool ProcessAlive(int pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  std::string stat;
  if (!ReadProcFile("/proc/" + std::to_string(pid) + "/stat", &stat)) return true;  // no /proc: trust kill
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return true;
  char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

Result<std::vector<std::string>> ProcessCommandLine(int pid) {
  std::string raw;
  if (pid <= 0 || !ReadProcFile("/proc/" + std::to_string(pid) + "/cmdline", &raw) || raw.empty()) {
    return NotFound("no process " + std::to_string(pid));
  }
  std::vector<std::string> argv;
  size_t begin = 0;
  while (begin < raw.size()) {
    size_t end = raw.find('\0', begin);
    if (end == std::string::npos) end = raw.size();
    argv.push_back(raw.substr(begin, end - begin));
    begin = end + 1;
  }
  return argv;
}

Status SignalProcess(int pid, int sig) {
  if (pid <= 0) return NotFound("no process " + std::to_string(pid));
  if (kill(pid, sig) == 0) return Status::Ok();
  if (errno == ESRCH) return NotFound("no process " + std::to_string(pid));
  return Errno("kill " + std::to_string(pid));
}

}  // namespace ferry
