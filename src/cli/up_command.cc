// `ferry up`: a server and a node for each of two local sites, in the foreground, for trying
// Ferry on one machine. `ferry demo`: the same, then the whole disaster-recovery cycle on a
// local disk image with a writer running, checking the data after every failover.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "cli/cli_config.h"
#include "cli/commands.h"
#include "cli/local_sites.h"

namespace ferry::cli {

using nlohmann::json;

namespace {

std::atomic<bool> g_interrupted{false};
void OnInterrupt(int) { g_interrupted = true; }

std::string DefaultUpDir() {
  const char* xdg = std::getenv("XDG_DATA_HOME");
  const char* home = std::getenv("HOME");
  if (xdg && *xdg) return std::string(xdg) + "/ferry/up";
  if (home && *home) return std::string(home) + "/.local/share/ferry/up";
  return "ferry-up";
}

// ---- the demo

// The writer: record i is a 4 KiB block at block i, filled with byte 1 + i % 250, written
// through the splitter export with qemu-io (a real NBD client). Records are acknowledged
// when qemu-io returns.
class Writer {
 public:
  explicit Writer(std::string uri) : uri_(std::move(uri)) {}
  ~Writer() { Stop(); }
  void Start() {
    stop_ = false;
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  void set_uri(const std::string& uri) {
    std::lock_guard<std::mutex> l(mu_);
    uri_ = uri;
  }
  uint64_t acked() const { return acked_.load(); }
  uint64_t refused() const { return refused_.load(); }
  // Writes n records at once (synchronously).
  bool WriteRange(uint64_t first, uint64_t n) {
    std::string cmd = "qemu-io -f raw";
    for (uint64_t i = first; i < first + n; ++i) {
      cmd += " -c 'write -P " + std::to_string(1 + i % 250) + " " + std::to_string(i * 4096) + " 4096'";
    }
    std::lock_guard<std::mutex> l(mu_);
    return std::system((cmd + " '" + uri_ + "' >/dev/null 2>&1").c_str()) == 0;
  }

 private:
  void Loop() {
    while (!stop_) {
      uint64_t next = acked_.load();
      if (WriteRange(next, 8)) {
        acked_ = next + 8;
      } else {
        ++refused_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  std::mutex mu_;
  std::string uri_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> acked_{0}, refused_{0};
  std::thread thread_;
};

// Reads back records [0, n) from uri; true when every one is there.
bool Verify(const std::string& uri, uint64_t n) {
  for (uint64_t first = 0; first < n; first += 64) {
    std::string cmd = "qemu-io -r -f raw";
    for (uint64_t i = first; i < std::min(n, first + 64); ++i) {
      cmd += " -c 'read -P " + std::to_string(1 + i % 250) + " " + std::to_string(i * 4096) + " 4096'";
    }
    // qemu-io reports a mismatch on its output; a missing export makes it fail to open.
    if (std::system((cmd + " '" + uri + "' 2>&1 | grep -qiE 'verification failed|error|open'").c_str()) == 0) {
      return false;
    }
  }
  return true;
}

struct Demo {
  LocalSites& sites;
  int failures = 0;

  void Check(bool ok, const std::string& what) {
    std::printf("  %s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    std::fflush(stdout);
    if (!ok) ++failures;
  }
  json Must(const Result<json>& r, const std::string& what) {
    if (!r.ok()) {
      std::fprintf(stderr, "ferry demo: %s: %s\n", what.c_str(), r.status().ToString().c_str());
      throw Exit{1};
    }
    return *r;
  }
  // Runs one operation and follows its job with a progress line; returns the final job.
  json Run(const std::string& title, const std::string& method, const std::string& path, const json& body) {
    std::printf("\n== %s\n", title.c_str());
    json job = Must(sites.Call(method, path, body), title)["job"];
    std::string id = job["id"];
    std::string last;
    for (;;) {
      job = Must(sites.Call("GET", "/jobs/" + id), "job " + id);
      std::string state = job["state"];
      std::string step;
      for (const json& s : job["steps"]) {
        if (s["state"] == "InProgress") step = s["title"].get<std::string>() + (s["message"] == "" ? "" : ": " + s["message"].get<std::string>());
      }
      char line[256];
      std::snprintf(line, sizeof line, "  %s %-10s %5.1f%%  %s", id.c_str(), state.c_str(), job["progress"].get<double>(),
                    step.c_str());
      if (line != last) {
        std::printf("%s\n", line);
        last = line;
      }
      if (state == "Succeeded" || state == "Failed" || state == "Cancelled" || state == "Suspended") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    for (const json& s : job["steps"]) {
      std::printf("    %-10s %s%s\n", s["state"].get<std::string>().c_str(), s["title"].get<std::string>().c_str(),
                  s["message"] == "" ? "" : (" — " + s["message"].get<std::string>()).c_str());
    }
    Check(job["state"] == "Succeeded", title + " succeeded");
    if (job["state"] != "Succeeded") {
      std::fprintf(stderr, "ferry demo: %s: %s\n", title.c_str(), job["error"].dump().c_str());
      throw Exit{1};
    }
    return job;
  }
  json Item() { return Must(sites.Call("GET", "/items/web1"), "item"); }
  std::string DiskUri(const json& rec) { return rec["uris"].begin().value().get<std::string>(); }
};

int RunDemo(const std::string& dir, int port) {
  std::filesystem::remove_all(dir);
  LocalSites sites(dir, port);
  std::printf("Ferry demo: a server and two sites (primary, recovery) on this machine, under %s\n", dir.c_str());
  if (Status s = sites.Start(); !s.ok()) {
    std::fprintf(stderr, "ferry demo: %s\n", s.ToString().c_str());
    return 1;
  }
  Demo d{sites};
  std::string disk = dir + "/web1-disk0.img";
  auto node = d.Must(sites.Call("GET", "/nodes/node-primary"), "node");
  d.Must(sites.Call("POST", "/policies",
                    json{{"name", "demo"}, {"crash_consistent_interval_seconds", 1}, {"app_consistent_interval_seconds", 0},
                         {"rpo_threshold_seconds", 30}}),
         "policy");
  d.Must(sites.Call("POST", "/machines",
                    json{{"name", "web1"}, {"site", "primary"}, {"node", "node-primary"},
                         {"disks", json::array({json{{"name", "disk0"}, {"path", disk}, {"size", 64 << 20}}})}}),
         "machine");
  d.Run("Protect web1 (primary → recovery)", "POST", "/items",
        json{{"machine", "web1"}, {"target_site", "recovery"}, {"policy", "demo"}});
  Writer writer("nbd+unix:///web1.disk0?socket=" + sites.nbd_socket("primary"));
  writer.Start();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // Records acknowledged 2 s before the test failover starts have reached the target.
  uint64_t before = writer.acked();
  std::this_thread::sleep_for(std::chrono::seconds(2));

  json job = d.Run("Test failover to the latest point (the writer keeps writing)", "POST", "/items/web1/test-failover",
                   json{{"point", "latest"}});
  json item = d.Item();
  d.Check(item["state"] == "TestFailover", "item is TestFailover");
  d.Check(before > 0 && Verify(d.DiskUri(item["test_failover"]), before),
          "the test disk holds the " + std::to_string(before) + " records written well before the point");
  d.Run("Clean up the test failover", "POST", "/items/web1/cleanup-test-failover", json{{"notes", "demo drill"}});

  d.Run("Fail over to latest, shutting the source down first", "POST", "/items/web1/failover",
        json{{"point", "latest"}, {"shutdown_source", true}});
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  writer.Stop();
  uint64_t acked = writer.acked();
  item = d.Item();
  std::string fo_uri = d.DiskUri(item["failover"]);
  d.Check(writer.refused() > 0 || !writer.WriteRange(acked, 1), "the shut-down source refuses writes");
  d.Check(Verify(fo_uri, acked), "the recovered disk holds all " + std::to_string(acked) + " acknowledged records");
  d.Run("Commit", "POST", "/items/web1/commit", json::object());

  std::printf("\n== The recovered machine writes at the recovery site\n");
  writer.set_uri(fo_uri);
  d.Check(writer.WriteRange(acked, 256), "256 more records written at the recovery site");
  acked += 256;
  job = d.Run("Reprotect (recovery → primary, delta only)", "POST", "/items/web1/reprotect", json::object());
  writer.set_uri(fo_uri);
  d.Check(writer.WriteRange(acked, 64), "64 more records while protected in reverse");
  acked += 64;
  d.Run("Fail back (planned: zero data loss)", "POST", "/items/web1/failover", json{{"planned", true}});
  item = d.Item();
  std::string back_uri = d.DiskUri(item["failover"]);
  d.Check(item["active_site"] == "primary", "web1 runs at primary again");
  d.Check(Verify(back_uri, acked), "every one of the " + std::to_string(acked) + " records is back at primary");
  d.Run("Commit", "POST", "/items/web1/commit", json::object());
  d.Run("Reprotect forward (primary → recovery)", "POST", "/items/web1/reprotect", json::object());
  item = d.Item();
  d.Check(item["state"] == "Protected" && item["direction"] == "forward", "web1 is protected forward again");
  std::printf("\n%s\n", d.failures ? "ferry demo: some checks FAILED" : "ferry demo: every check passed");
  return d.failures ? 1 : 0;
}

}  // namespace

void AddUpCommands(CLI::App& app) {
  auto* up = app.add_subcommand("up", "Start a server and a node for each of two local sites (primary, recovery)");
  auto dir = std::make_shared<std::string>(DefaultUpDir());
  auto port = std::make_shared<int>(7700);
  auto cli_config = std::make_shared<std::string>(DefaultCliConfigPath());
  up->add_option("--dir", *dir, "Where the store, the nodes' data and the logs go")->capture_default_str();
  up->add_option("--port", *port, "The API's port; the nodes use the next ones")->capture_default_str();
  up->add_option("--cli-config", *cli_config, "Where to write the CLI's server and token")->capture_default_str();
  up->callback([dir, port, cli_config] {
    LocalSites sites(*dir, *port);
    signal(SIGINT, OnInterrupt);
    signal(SIGTERM, OnInterrupt);
    Check(sites.Start(), "ferry up");
    if (!cli_config->empty()) Check(WriteCliConfig(*cli_config, sites.server_url(), sites.token()), "cli config");
    std::printf("Ferry is up:\n  server   %s/api/v1 (token in %s/server/api-token%s)\n", sites.server_url().c_str(),
                dir->c_str(), cli_config->empty() ? "" : (", and in " + *cli_config).c_str());
    std::printf("  sites    primary (node-primary), recovery (node-recovery)\n  logs     %s/*.log\n", dir->c_str());
    std::printf("Try: ferry site list; ferry node list. Ctrl-C stops everything (the data stays).\n");
    std::fflush(stdout);
    while (!g_interrupted) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::printf("stopping\n");
    sites.Stop();
  });

  auto* demo = app.add_subcommand("demo", "Run the whole disaster-recovery cycle on this machine, checking the data");
  auto ddir = std::make_shared<std::string>();
  auto dport = std::make_shared<int>(7750);
  demo->add_option("--dir", *ddir, "Work directory (default: a new temporary one, removed afterwards)");
  demo->add_option("--port", *dport, "The API's port; the nodes use the next ones")->capture_default_str();
  demo->callback([ddir, dport] {
    spdlog::set_level(spdlog::level::warn);
    std::string dir = *ddir;
    bool temp = dir.empty();
    if (temp) {
      char tmpl[] = "/tmp/ferry-demo-XXXXXX";
      dir = ::mkdtemp(tmpl);
    }
    int rc = 1;
    try {
      rc = RunDemo(dir, *dport);
    } catch (const Exit& e) {
      rc = e.code;
    }
    if (temp && rc == 0) std::filesystem::remove_all(dir);
    if (rc != 0) std::fprintf(stderr, "ferry demo: logs kept in %s\n", dir.c_str());
    if (rc != 0) throw Exit{rc};
  });
}

}  // namespace ferry::cli
