#include "node/server_client.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "env/socket.h"
#include "node/config.h"
#include "node/node.h"

namespace ferry::node {

using nlohmann::json;

namespace {

constexpr char kIdentityFile[] = "server.json";

std::string Bracketed(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// "HTTP 503: {...}" or the transport error, for log lines.
std::string Describe(const httplib::Result& r) {
  if (!r) return "no answer (" + httplib::to_string(r.error()) + ")";
  std::string body = r->body.size() > 300 ? r->body.substr(0, 300) + "…" : r->body;
  while (!body.empty() && (body.back() == '\n' || body.back() == ' ')) body.pop_back();
  return "HTTP " + std::to_string(r->status) + (body.empty() ? "" : ": " + body);
}

}  // namespace

std::string AdvertisedHostPort(const std::string& host_port, const std::string& advertise_host) {
  std::string hp = host_port.rfind("tcp://", 0) == 0 ? host_port.substr(6) : host_port;
  const size_t colon = hp.rfind(':');
  if (colon == std::string::npos) return hp;
  std::string host = hp.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "0.0.0.0" || host == "::") {
    host = advertise_host.empty() ? "127.0.0.1" : advertise_host;
  }
  return Bracketed(host) + hp.substr(colon);
}

NodeAdvert AdvertOf(const NodeConfig& config, const Node& node, int api_port) {
  NodeAdvert a;
  a.name = config.name;
  a.site = config.site;
  std::string host;
  uint16_t port = 0;
  if (!SplitHostPort(config.api_listen, &host, &port).ok()) host = "";
  a.api_url = "http://" + AdvertisedHostPort(Bracketed(host) + ":" + std::to_string(api_port),
                                             config.advertise_host);
  a.api_token = config.api_token;
  if (!node.link_address().empty()) a.link_address = AdvertisedHostPort(node.link_address(), config.advertise_host);
  for (const std::string& n : node.nbd_addresses()) {
    a.nbd.push_back(n.rfind("tcp://", 0) == 0 ? "tcp://" + AdvertisedHostPort(n, config.advertise_host) : n);
  }
  return a;
}

Result<std::unique_ptr<ServerClient>> ServerClient::Start(ServerClientOptions options) {
  const std::string& url = options.url;
  if (url.rfind("http://", 0) != 0 || url.size() <= 7) {
    return InvalidArgument("server URL '" + url + "': use http://HOST[:PORT] (https is not supported yet)");
  }
  std::unique_ptr<ServerClient> c(new ServerClient(std::move(options)));
  const size_t slash = c->o_.url.find('/', 7);
  const std::string origin = c->o_.url.substr(0, slash);
  if (slash != std::string::npos) {
    c->path_prefix_ = c->o_.url.substr(slash);
    while (!c->path_prefix_.empty() && c->path_prefix_.back() == '/') c->path_prefix_.pop_back();
  }
  c->http_ = std::make_unique<httplib::Client>(origin);
  if (!c->http_->is_valid()) return InvalidArgument("server URL '" + c->o_.url + "' is not valid");
  c->http_->set_connection_timeout(3, 0);
  c->http_->set_read_timeout(10, 0);
  c->http_->set_write_timeout(10, 0);
  Status loaded = c->LoadIdentity();
  if (!loaded.ok()) {
    spdlog::warn("{}: {}; the node registers again", JoinPath(c->o_.data_dir, kIdentityFile), loaded.ToString());
  }
  c->thread_ = std::thread([p = c.get()] { p->Run(); });
  return c;
}

ServerClient::ServerClient(ServerClientOptions options) : o_(std::move(options)) {}

ServerClient::~ServerClient() { Stop(); }

void ServerClient::Stop() {
  {
    std::lock_guard l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (http_) http_->stop();  // ends a request in progress
  if (thread_.joinable()) thread_.join();
}

std::string ServerClient::node_id() const {
  std::lock_guard l(mu_);
  return node_id_;
}

Status ServerClient::LoadIdentity() {
  const std::string path = JoinPath(o_.data_dir, kIdentityFile);
  if (!o_.env->Exists(path)) return Status::Ok();
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(o_.env, path));
  try {
    json j = json::parse(text);
    if (j.value("url", "") != o_.url) return Status::Ok();  // registered with another server
    std::string id = j.at("node_id").get<std::string>(), secret = j.at("secret").get<std::string>();
    if (id.empty() || secret.empty()) return DataLoss("node_id or secret is empty");
    std::lock_guard l(mu_);
    node_id_ = id;
    secret_ = secret;
  } catch (const std::exception& e) {
    return DataLoss(std::string("unreadable: ") + e.what());
  }
  return Status::Ok();
}

Status ServerClient::Register() {
  if (o_.enroll_token.empty()) {
    return FailedPrecondition("the node is not registered and [server] enroll_token is not set: "
                              "create a token (POST /api/v1/nodes/enrollments) and set it");
  }
  const NodeAdvert& a = o_.advert;
  json body = {{"token", o_.enroll_token}, {"name", a.name},          {"site", a.site},
               {"api_url", a.api_url},     {"api_token", a.api_token}, {"link_address", a.link_address},
               {"nbd", a.nbd}};
  auto r = http_->Post(path_prefix_ + "/api/v1/nodes/register", body.dump(), "application/json");
  if (!r || r->status / 100 != 2) return Unavailable("registration refused: " + Describe(r));
  std::string id, secret;
  try {
    json j = json::parse(r->body);
    id = j.at("node").at("id").get<std::string>();
    secret = j.at("secret").get<std::string>();
  } catch (const std::exception& e) {
    return Unavailable(std::string("the server's answer to the registration lacks node.id or secret: ") + e.what());
  }
  const json identity = {{"node_id", id}, {"secret", secret}, {"url", o_.url}};
  RETURN_IF_ERROR(WriteFileAtomically(o_.env, JoinPath(o_.data_dir, kIdentityFile), identity.dump(2) + "\n"));
  std::lock_guard l(mu_);
  node_id_ = id;
  secret_ = secret;
  return Status::Ok();
}

Status ServerClient::Heartbeat(bool* unauthorized) {
  std::string id, secret;
  {
    std::lock_guard l(mu_);
    id = node_id_;
    secret = secret_;
  }
  const json body = {{"status", o_.status ? o_.status() : json::object()}};
  httplib::Headers headers = {{"Authorization", "Bearer " + secret}};
  auto r = http_->Post(path_prefix_ + "/api/v1/nodes/" + id + "/heartbeat", headers, body.dump(),
                       "application/json");
  *unauthorized = r && r->status == 401;
  if (!r || r->status / 100 != 2) return Unavailable("heartbeat not accepted: " + Describe(r));
  return Status::Ok();
}

void ServerClient::Run() {
  // One log line per failure; the first of a kind goes out as an event (which the node logs).
  auto report = [this](const std::string& severity, const std::string& message, bool as_event) {
    if (as_event && o_.event) {
      o_.event(severity, message);
    } else if (severity == "error") {
      spdlog::error("{}", message);
    } else {
      spdlog::warn("{}", message);
    }
  };
  bool register_failed = false, unknown = false, heartbeat_failing = false;
  std::unique_lock l(mu_);
  while (!stopping_) {
    const bool registered = !node_id_.empty();
    l.unlock();
    if (!registered) {
      Status s = Register();
      if (s.ok()) {
        spdlog::info("registered with the server {} as {}", o_.url, node_id());
      } else {
        report("warning", "registering with the server " + o_.url + " failed: " + s.ToString() +
                              "; the node retries every " + std::to_string(o_.interval_ms) + " ms",
               !register_failed);
        register_failed = true;
      }
    }
    l.lock();
    if (stopping_) break;
    if (!node_id_.empty()) {
      l.unlock();
      bool unauthorized = false;
      Status s = Heartbeat(&unauthorized);
      if (s.ok()) {
        if (unknown || heartbeat_failing) spdlog::info("heartbeats to the server {} are accepted again", o_.url);
        unknown = heartbeat_failing = false;
      } else if (unauthorized) {
        // Once: the node keeps trying, and says so again only after a heartbeat got through.
        if (!unknown) {
          report("error", "the server " + o_.url + " no longer knows this node " + node_id() +
                              " (a heartbeat was answered 401): re-enroll it (delete " +
                              JoinPath(o_.data_dir, kIdentityFile) +
                              " and set a new [server] enroll_token); heartbeats go on",
                 true);
        }
        unknown = true;
      } else {
        if (!heartbeat_failing) {
          spdlog::warn("heartbeat to the server {} failed: {}; retrying every {} ms", o_.url, s.ToString(),
                       o_.interval_ms);
        }
        heartbeat_failing = true;
      }
      l.lock();
    }
    cv_.wait_for(l, std::chrono::milliseconds(o_.interval_ms), [&] { return stopping_; });
  }
}

}  // namespace ferry::node
