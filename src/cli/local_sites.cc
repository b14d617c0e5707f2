#include "cli/local_sites.h"

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

namespace ferry::cli {

using nlohmann::json;

LocalSites::~LocalSites() { Stop(); }

void LocalSites::Stop() {
  for (pid_t p : children_) ::kill(p, SIGTERM);
  for (pid_t p : children_) {
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(p, nullptr, WNOHANG) == p) {
        p = 0;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (p != 0) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
  }
  children_.clear();
}

Result<pid_t> LocalSites::Spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("cannot open " + log);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    return IoError("fork failed");
  }
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::setpgid(0, 0);  // Ctrl-C goes to `ferry up`, which stops the children in order
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(fd);
  children_.push_back(pid);
  return pid;
}

Result<json> LocalSites::Call(const std::string& method, const std::string& path, const json& body) const {
  httplib::Client cli("127.0.0.1", port_);
  cli.set_read_timeout(30, 0);
  httplib::Headers h{{"Authorization", "Bearer " + token_}};
  std::string payload = body.is_null() ? "" : body.dump();
  auto res = [&] {
    if (method == "GET") return cli.Get("/api/v1" + path, h);
    if (method == "DELETE") return cli.Delete("/api/v1" + path, h);
    return cli.Post("/api/v1" + path, h, payload, "application/json");
  }();
  if (!res) return Unavailable("the server at " + server_url() + " did not answer " + method + " " + path);
  json j = json::parse(res->body, nullptr, false);
  if (res->status >= 300 || j.is_discarded()) {
    std::string msg = j.is_object() && j.contains("error") ? j["error"].value("message", res->body) : res->body;
    return FailedPrecondition(method + " " + path + ": HTTP " + std::to_string(res->status) + ": " + msg);
  }
  return j;
}

Status LocalSites::StartNode(const std::string& site, int index) {
  std::string ndir = dir_ + "/" + site;
  ::mkdir(ndir.c_str(), 0700);
  std::string config = ndir + "/node.toml";
  struct stat st;
  if (::stat(config.c_str(), &st) != 0) {
    auto enroll = Call("POST", "/nodes/enrollments", json{{"site", site}});
    if (!enroll.ok()) return enroll.status();
    std::ofstream out(config);
    out << "name = \"node-" << site << "\"\nsite = \"" << site << "\"\ndata_dir = \"data\"\n"
        << "[listen]\napi = \"127.0.0.1:" << port_ + index << "\"\n"
        << "nbd = [\"unix://" << nbd_socket(site) << "\"]\n"
        << "link = \"127.0.0.1:" << port_ + 10 + index << "\"\n"
        << "[tls]\ninsecure = true\n"
        << "[server]\nurl = \"" << server_url() << "\"\nenroll_token = \"" << (*enroll)["token"].get<std::string>()
        << "\"\n";
    if (!out) return IoError("cannot write " + config);
  }
  auto pid = Spawn({"ferry", "node", "--config", config}, dir_ + "/node-" + site + ".log");
  return pid.status();
}

Status LocalSites::Start() {
  ::mkdir(dir_.c_str(), 0700);
  auto server = Spawn({"ferry", "server", "--data", dir_ + "/server", "--listen", "127.0.0.1:" + std::to_string(port_)},
                      dir_ + "/server.log");
  if (!server.ok()) return server.status();
  for (int i = 0;; ++i) {
    std::ifstream in(dir_ + "/server/api-token");
    if (in && std::getline(in, token_) && !token_.empty()) {
      httplib::Client cli("127.0.0.1", port_);
      if (auto r = cli.Get("/api/v1/health"); r && r->status == 200) break;
    }
    if (::waitpid(*server, nullptr, WNOHANG) == *server) {
      children_.erase(std::find(children_.begin(), children_.end(), *server));
      return Unavailable("ferry server exited at start: see " + dir_ + "/server.log (is port " +
                         std::to_string(port_) + " taken? choose another with --port)");
    }
    if (i > 200) return Unavailable("ferry server did not start within 20 s: see " + dir_ + "/server.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto sites = Call("GET", "/sites");
  if (!sites.ok()) return sites.status();
  int index = 1;
  for (const char* site : {"primary", "recovery"}) {
    bool have = false;
    for (const json& s : (*sites)["items"]) have = have || s["name"] == site;
    if (!have) {
      auto made = Call("POST", "/sites", json{{"name", site}});
      if (!made.ok()) return made.status();
    }
    Status s = StartNode(site, index++);
    if (!s.ok()) return s;
  }
  for (int i = 0; i < 300; ++i) {
    auto nodes = Call("GET", "/nodes");
    if (nodes.ok()) {
      int healthy = 0;
      for (const json& n : (*nodes)["items"]) healthy += n["health"] == "Healthy";
      if (healthy >= 2) return Status::Ok();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Unavailable("the nodes did not register within 30 s: see " + dir_ + "/node-*.log");
}

}  // namespace ferry::cli
