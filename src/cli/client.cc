#include "cli/client.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>

#include "cli/exit_codes.h"

namespace ferry::cli {

namespace {

constexpr char kApiRoot[] = "/api/v1";
constexpr int64_t kMaxPageSize = 1000;  // the API's largest `limit`

std::string Reason(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection: return "connection failed";
    case httplib::Error::ConnectionTimeout: return "connection timed out";
    case httplib::Error::Read: return "no answer (the connection broke or timed out while reading)";
    case httplib::Error::Write: return "the connection broke while sending";
    default: return httplib::to_string(e);
  }
}

// The error object of an error answer; code "HTTP <status>" and the start of the body when
// the server (or a proxy in front of it) did not send one.
ApiError HttpError(int status, const std::string& body) {
  ApiError e;
  e.kind = ApiError::Kind::kHttp;
  e.http_status = status;
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    const json& err = j["error"];
    auto str = [&](const char* key) {
      return err.contains(key) && err[key].is_string() ? err[key].get<std::string>() : std::string();
    };
    e.code = str("code");
    e.message = str("message");
    e.action = str("action");
  }
  if (e.code.empty()) e.code = "HTTP " + std::to_string(status);
  if (e.message.empty()) {
    e.message = body.substr(0, 200);
    while (!e.message.empty() && (e.message.back() == '\n' || e.message.back() == '\r')) {
      e.message.pop_back();
    }
    if (e.message.empty()) e.message = "the server answered " + std::to_string(status);
  }
  return e;
}

}  // namespace

std::string ApiError::ToString() const {
  std::string s = kind == Kind::kUnreachable || code.empty() ? message : code + ": " + message;
  if (!action.empty()) s += "; " + action;
  return s;
}

ApiError LocalError(std::string code, std::string message, std::string action) {
  ApiError e;
  e.kind = ApiError::Kind::kLocal;
  e.code = std::move(code);
  e.message = std::move(message);
  e.action = std::move(action);
  return e;
}

int ExitCodeFor(const ApiError& error) {
  if (error.kind == ApiError::Kind::kUnreachable) return exit_code::kUnreachable;
  switch (error.http_status) {
    case 400:
    case 413: return exit_code::kBadRequest;
    case 401: return exit_code::kUnauthenticated;
    case 404: return exit_code::kNotFound;
    case 409: return exit_code::kRefused;
    case 0: break;
    default: return exit_code::kError;
  }
  const std::string& c = error.code;
  if (c == "InvalidArgument" || c == "PayloadTooLarge") return exit_code::kBadRequest;
  if (c == "Unauthenticated") return exit_code::kUnauthenticated;
  if (c == "NotFound") return exit_code::kNotFound;
  if (c == "AlreadyExists" || c == "FailedPrecondition" || c == "InvalidState") {
    return exit_code::kRefused;
  }
  return exit_code::kError;
}

Result<ServerUrl> ParseServerUrl(const std::string& url) {
  const std::string form = " (expected http://HOST[:PORT], e.g. " + std::string(kDefaultServer) + ")";
  auto bad = [&](const std::string& why) { return InvalidArgument("server '" + url + "' " + why + form); };
  if (url.rfind("https://", 0) == 0) {
    return InvalidArgument("server '" + url + "': https:// is not supported yet; use http:// " +
                           "(on a trusted network or through an SSH tunnel)");
  }
  if (url.rfind("http://", 0) != 0) return bad("is not an http:// URL");
  std::string rest = url.substr(7);
  ServerUrl u;
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) u.base_path = rest.substr(slash);
  while (!u.base_path.empty() && u.base_path.back() == '/') u.base_path.pop_back();
  if (u.base_path.find_first_of("?#") != std::string::npos) return bad("has a query or fragment");
  std::string port;
  bool has_port = false;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) return bad("has an unclosed '['");
    u.host = authority.substr(1, close - 1);
    std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("has junk after ']'");
      port = after.substr(1);
      has_port = true;
    }
  } else {
    size_t colon = authority.find(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) {
      port = authority.substr(colon + 1);
      has_port = true;
    }
  }
  if (u.host.empty() || u.host.find('@') != std::string::npos) return bad("has no host");
  if (has_port) {
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); }) ||
        std::stoi(port) < 1 || std::stoi(port) > 65535) {
      return bad("has a bad port");
    }
    u.port = std::stoi(port);
  }
  return u;
}

std::string UrlEncode(const std::string& text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Result<ApiClient> ApiClient::Create(const Connection& connection) {
  auto url = ParseServerUrl(connection.server);
  if (!url.ok()) {
    const Status& s = url.status();
    if (connection.server_source == "default") return s;
    return Status(s.code(), std::string(s.message()) + " (from " + connection.server_source + ")");
  }
  return ApiClient(connection, std::move(*url));
}

ApiClient::ApiClient(Connection connection, ServerUrl url)
    : connection_(std::move(connection)), url_(std::move(url)) {
  http_ = std::make_unique<httplib::Client>(url_.host, url_.port);
  http_->set_connection_timeout(5, 0);
  // Operations answer 202 at once and run as jobs, so a slow answer means trouble.
  http_->set_read_timeout(60, 0);
  http_->set_write_timeout(60, 0);
  http_->set_url_encode(false);  // paths and queries are encoded here
}

ApiClient::ApiClient(ApiClient&&) noexcept = default;
ApiClient& ApiClient::operator=(ApiClient&&) noexcept = default;
ApiClient::~ApiClient() = default;

ApiOr<json> ApiClient::Get(const std::string& path, const Query& query) {
  return Send("GET", path, query, nullptr);
}

ApiOr<json> ApiClient::Post(const std::string& path, const json& body) {
  return Send("POST", path, {}, &body);
}

ApiOr<json> ApiClient::Patch(const std::string& path, const json& body) {
  return Send("PATCH", path, {}, &body);
}

ApiOr<json> ApiClient::Put(const std::string& path, const json& body) { return Send("PUT", path, {}, &body); }

ApiOr<json> ApiClient::Delete(const std::string& path) { return Send("DELETE", path, {}, nullptr); }

ApiOr<json> ApiClient::Send(const char* method, const std::string& path, const Query& query,
                            const json* body) {
  httplib::Request req;
  req.method = method;
  req.path = url_.base_path + kApiRoot + path;
  char sep = '?';
  for (const auto& [key, value] : query) {
    if (value.empty()) continue;
    req.path += sep + UrlEncode(key) + "=" + UrlEncode(value);
    sep = '&';
  }
  req.headers.emplace("Accept", "application/json");
  req.headers.emplace("User-Agent", "ferry-cli/0.1.0");
  if (!connection_.token.empty()) req.headers.emplace("Authorization", "Bearer " + connection_.token);
  if (body) {
    req.body = body->dump();
    req.headers.emplace("Content-Type", "application/json");
  }
  httplib::Result res = http_->send(req);
  if (!res) {
    ApiError e;
    e.kind = ApiError::Kind::kUnreachable;
    e.code = "Unreachable";
    e.message = "cannot reach the Ferry server at " + connection_.server + ": " + Reason(res.error()) +
                "; is `ferry server` (or `ferry up`) running?";
    if (connection_.server_source != "default")
      e.message += " (server from " + connection_.server_source + ")";
    return e;
  }
  if (res->status < 200 || res->status > 299) {
    ApiError e = HttpError(res->status, res->body);
    if (res->status == 401) {
      e.action = connection_.token.empty()
                     ? "no API token is configured: pass --token, set FERRY_TOKEN, or put it in " +
                           (DefaultCliConfigPath().empty() ? std::string("the CLI configuration")
                                                           : DefaultCliConfigPath()) +
                           " (`ferry up` writes it there)"
                     : "the server refused the token from " + connection_.token_source +
                           "; use the server's API token";
    }
    return e;
  }
  if (res->body.empty()) return json::object();
  json j = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    ApiError e;
    e.kind = ApiError::Kind::kBadResponse;
    e.http_status = res->status;
    e.code = "BadResponse";
    e.message = std::string(method) + " " + req.path + ": the answer is not JSON; is " + connection_.server +
                " a Ferry server?";
    return e;
  }
  return j;
}

ApiOr<json> ApiClient::List(const std::string& path, Query query, int64_t limit) {
  json all = json::array();
  std::string token;
  query.emplace_back("limit", "");
  query.emplace_back("page_token", "");
  for (;;) {
    int64_t want =
        limit > 0 ? std::min<int64_t>(kMaxPageSize, limit - static_cast<int64_t>(all.size())) : kMaxPageSize;
    query[query.size() - 2].second = std::to_string(want);
    query.back().second = token;
    ApiOr<json> page = Get(path, query);
    if (!page.ok()) return page;
    const json& p = *page;
    if (!p.is_object() || !p.contains("items") || !p["items"].is_array()) {
      ApiError e;
      e.kind = ApiError::Kind::kBadResponse;
      e.code = "BadResponse";
      e.message = "GET " + path + ": the answer has no \"items\" list";
      return e;
    }
    for (const json& item : p["items"]) all.push_back(item);
    std::string next = p.contains("next_page_token") && p["next_page_token"].is_string()
                           ? p["next_page_token"].get<std::string>()
                           : "";
    if (!next.empty() && next == token) {
      ApiError e;
      e.kind = ApiError::Kind::kBadResponse;
      e.code = "BadResponse";
      e.message = "GET " + path + ": the server returned the same page token twice";
      return e;
    }
    token = std::move(next);
    if (token.empty()) break;
    if (limit > 0 && static_cast<int64_t>(all.size()) >= limit) break;
  }
  if (limit > 0 && static_cast<int64_t>(all.size()) > limit) all.erase(all.begin() + limit, all.end());
  return json{{"items", std::move(all)}, {"next_page_token", token}};
}

}  // namespace ferry::cli
