// `ferry server`: the control plane (REST API, jobs, monitor) on an SQLite store.
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <csignal>
#include <fstream>
#include <random>
#include <thread>

#include "api/server.h"
#include "cli/commands.h"
#include "control/controller.h"
#include "store/database.h"

namespace ferry::cli {

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

// The API token: DIR/api-token, created (random, mode 0600) on first start.
Result<std::string> LoadOrCreateToken(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  if (in && std::getline(in, token) && !token.empty()) return token;
  std::random_device rd;
  static const char* hex = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) token += hex[rd() & 15];
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return IoError("cannot write " + tmp);
    out << token << "\n";
  }
  ::chmod(tmp.c_str(), 0600);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return IoError("cannot rename " + tmp + " to " + path);
  return token;
}

}  // namespace

void AddServerCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("server", "Run the control plane: REST API, jobs, monitor (SQLite store)");
  auto data = std::make_shared<std::string>();
  auto listen = std::make_shared<std::string>("127.0.0.1:7700");
  cmd->add_option("--data", *data, "Directory of the store (ferry.db) and the API token (api-token)")->required();
  cmd->add_option("--listen", *listen, "HOST:PORT of the REST API")->capture_default_str();
  cmd->callback([data, listen] {
    ::mkdir(data->c_str(), 0700);
    auto token = LoadOrCreateToken(*data + "/api-token");
    Check(token.status(), "api token");
    auto db = store::OpenSqlite(*data + "/ferry.db");
    Check(db.status(), "store");
    auto ctl = control::Controller::Open(std::move(*db), SystemClock::Default());
    Check(ctl.status(), "store");
    Check((*ctl)->Start(), "start");
    api::ApiServer server(ctl->get(), *token);
    Check(server.Listen(*listen), "listen");
    std::signal(SIGINT, OnSignal);
    std::signal(SIGTERM, OnSignal);
    std::printf("ferry server: API on http://%s/api/v1 (token in %s/api-token)\n", listen->c_str(), data->c_str());
    std::fflush(stdout);
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    server.Stop();
    (*ctl)->Stop();
  });
}

}  // namespace ferry::cli
