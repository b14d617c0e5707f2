// The `ferry` verbs that drive the control plane: a pure client of the server's REST API
// (docs/protocols/server-api.md); the reference is docs/cli.md.
//
// Exit codes (exit_codes.h; scripts rely on them, numbers are never reused):
//   0    success; with --wait: the job Succeeded
//   1    any other error (a bad configuration file, a server error, ...)
//   2    usage error: the command line itself is wrong (reported by CLI11)
//   3    not found (404, or no resource with that id or name)
//   4    refused by the state or a precondition (409)
//   5    --wait / job watch: the job Failed
//   6    --wait / job watch: the job was Cancelled
//   7    unauthenticated (401): missing or wrong API token
//   8    the server is unreachable
//   9    --wait / job watch: the job is Suspended, waiting for a manual action
//   10   bad request (400, 413; or an ambiguous name)
//   11   plan readiness: the plan is not ready (problems listed)
//   130  Ctrl-C while following a job: the watching stopped, the job goes on
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "cli/control_verbs.h"
#include "cli/exit_codes.h"
#include "cli/job_follow.h"
#include "cli/job_view.h"

namespace ferry::cli {

namespace {

volatile std::sig_atomic_t g_interrupted = 0;

void OnInterrupt(int) { g_interrupted = 1; }

// Turns Ctrl-C into a request to stop following, for as long as it lives.
class InterruptGuard {
 public:
  InterruptGuard() {
    g_interrupted = 0;
    struct sigaction sa = {};
    sa.sa_handler = OnInterrupt;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_);
  }
  ~InterruptGuard() { sigaction(SIGINT, &old_, nullptr); }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
  bool interrupted() const { return g_interrupted != 0; }

 private:
  struct sigaction old_ = {};
};

size_t TerminalWidth() {
  struct winsize ws = {};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

}  // namespace

std::shared_ptr<VerbOptions> AddVerbOptions(CLI::App* verb) {
  auto o = std::make_shared<VerbOptions>();
  verb->add_option("--server", o->server, "The Ferry server's URL (else FERRY_SERVER, the CLI config file)");
  verb->add_option("--token", o->token, "The server's API token (else FERRY_TOKEN, the CLI config file)");
  verb->add_option("--output,-o", o->output, "Output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  return o;
}

void AddWaitFlag(CLI::App* verb, VerbOptions* options) {
  verb->add_flag("--wait", options->wait, "Follow the job to its end; the exit code tells how it ended");
}

ApiClient Connect(const VerbOptions& options) {
  auto connection = ResolveConnection(options.server, options.token, ProcessEnv());
  Check(connection.status(), "CLI configuration");
  auto client = ApiClient::Create(*connection);
  Check(client.status());
  return std::move(client).value();
}

void FailWith(const ApiError& error, const std::string& what) {
  std::fprintf(stderr, "ferry: %s%s%s\n", what.c_str(), what.empty() ? "" : ": ", error.ToString().c_str());
  throw Exit{ExitCodeFor(error)};
}

void PrintJson(const json& value) { std::printf("%s\n", value.dump(2).c_str()); }

void PrintList(const VerbOptions& options, const json& list, Table (*table)(const json&)) {
  if (options.json()) return PrintJson(list);
  std::fputs(table(Field(list, "items")).Format().c_str(), stdout);
}

void PrintResource(const VerbOptions& options, const json& resource, std::string (*details)(const json&)) {
  if (options.json()) return PrintJson(resource);
  std::fputs(details(resource).c_str(), stdout);
}

void ReportStartedJob(ApiClient& client, const VerbOptions& options, const json& answer) {
  const json& job = Field(answer, "job").is_object() ? Field(answer, "job") : answer;
  const std::string id = StringField(job, "id");
  if (id.empty()) {
    FailWith(LocalError("BadResponse", "the server's answer names no job: " + answer.dump()), "");
  }
  if (!options.wait) {
    if (options.json()) return PrintJson(answer);
    std::printf("%s\n", id.c_str());
    if (isatty(STDERR_FILENO)) std::fprintf(stderr, "follow it with: ferry job watch %s\n", id.c_str());
    return;
  }
  if (!options.json()) {
    std::printf("%s\n", id.c_str());
    std::fflush(stdout);
  }
  FollowAndReport(client, options, id);
}

void FollowAndReport(ApiClient& client, const VerbOptions& options, const std::string& job_id) {
  InterruptGuard interrupt;
  FollowOptions follow;
  follow.out = options.json() ? nullptr : stdout;
  follow.tty = isatty(STDOUT_FILENO);
  follow.width = TerminalWidth();
  follow.stop_requested = [&interrupt] { return interrupt.interrupted(); };
  FollowedJob end = OrExit(FollowJob(client, job_id, follow), "following " + job_id);
  if (end.interrupted) {
    std::fprintf(stderr,
                 "ferry: stopped watching %s; the job goes on (follow it again: ferry job watch %s)\n",
                 job_id.c_str(), job_id.c_str());
    throw Exit{exit_code::kInterrupted};
  }
  if (options.json()) {
    PrintJson(end.job);
  } else {
    std::fputs(JobSummary(end.job).c_str(), stdout);
  }
  std::fflush(stdout);
  int code = ExitCodeForJobState(StringField(end.job, "state"));
  if (code != exit_code::kOk) throw Exit{code};
}

void AddControlCommands(CLI::App& app) {
  AddInventoryCommands(app);
  AddItemCommands(app);
  AddJobCommands(app);
  AddPlanCommands(app);
  AddGroupCommands(app);
}

}  // namespace ferry::cli
