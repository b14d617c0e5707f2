#include "control/node_client.h"

#include <httplib.h>

namespace ferry::control {

namespace {

Code CodeFromName(const std::string& name) {
  static const std::pair<const char*, Code> codes[] = {
      {"InvalidArgument", Code::kInvalidArgument}, {"NotFound", Code::kNotFound},
      {"AlreadyExists", Code::kAlreadyExists},     {"FailedPrecondition", Code::kFailedPrecondition},
      {"OutOfRange", Code::kOutOfRange},           {"ResourceExhausted", Code::kResourceExhausted},
      {"DataLoss", Code::kDataLoss},               {"IoError", Code::kIoError},
      {"Aborted", Code::kAborted},                 {"Unavailable", Code::kUnavailable},
  };
  for (const auto& [n, c] : codes) {
    if (name == n) return c;
  }
  return Code::kInternal;
}

}  // namespace

NodeClient::NodeClient(std::string name, std::string api_url, std::string token, int read_timeout_s)
    : name_(std::move(name)), url_(std::move(api_url)), token_(std::move(token)), read_timeout_s_(read_timeout_s) {}

Result<json> NodeClient::Get(const std::string& path) const { return Call("GET", path, nullptr); }
Result<json> NodeClient::Post(const std::string& path, const json& body) const { return Call("POST", path, &body); }
Result<json> NodeClient::Put(const std::string& path, const json& body) const { return Call("PUT", path, &body); }
Result<json> NodeClient::Delete(const std::string& path) const { return Call("DELETE", path, nullptr); }

Result<json> NodeClient::Call(const std::string& method, const std::string& path, const json* body) const {
  httplib::Client cli(url_);
  cli.set_connection_timeout(3, 0);
  cli.set_read_timeout(read_timeout_s_, 0);
  cli.set_write_timeout(10, 0);
  // Small requests answered at once: without this, delayed ACKs add ~40 ms to some calls
  // (the barrier's hold time is two such calls).
  cli.set_tcp_nodelay(true);
  httplib::Headers headers;
  if (!token_.empty()) headers.emplace("Authorization", "Bearer " + token_);
  std::string payload = body ? body->dump() : std::string();
  httplib::Result res = [&] {
    if (method == "GET") return cli.Get(path, headers);
    if (method == "POST") return cli.Post(path, headers, payload, "application/json");
    if (method == "PUT") return cli.Put(path, headers, payload, "application/json");
    return cli.Delete(path, headers);
  }();
  const std::string where = "node " + name_ + " (" + url_ + ")";
  if (!res) {
    return Unavailable("cannot reach " + where + " for " + method + " " + path + ": " +
                       httplib::to_string(res.error()));
  }
  json j = json::parse(res->body, nullptr, false);
  if (j.is_discarded()) {
    return Unavailable(where + " answered " + method + " " + path + " with HTTP " +
                       std::to_string(res->status) + " and a body that is not JSON");
  }
  if (res->status >= 200 && res->status < 300) return j;
  std::string code = j.contains("error") ? j["error"].value("code", "") : "";
  std::string message = j.contains("error") ? j["error"].value("message", "") : res->body;
  if (res->status == 401) return FailedPrecondition(where + " refused the server's token: " + message);
  return Status(CodeFromName(code), where + ": " + message);
}

}  // namespace ferry::control
