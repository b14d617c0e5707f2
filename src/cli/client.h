// ApiClient: the `ferry` verbs' only way to the control plane, a client of the server's REST
// API (docs/protocols/server-api.md). Where the server and token come from: cli_config.h.
//
// Every call returns the parsed JSON answer or an ApiError that says what went wrong:
//   kHttp         the server answered with an error status; code/message/action are the
//                 server's {"error": {...}} (or "HTTP 502" and the body when it sent none).
//                 For 401 the action says where the token came from and how to set it.
//   kUnreachable  no answer: connection refused, timed out, or broken; the message names the
//                 URL and asks whether `ferry server` (or `ferry up`) is running.
//   kBadResponse  an answer that is not the JSON the API promises.
//   kLocal        refused before sending: a malformed or unsupported (https://) server URL,
//                 an unknown or ambiguous name (resolve.h).
// ExitCodeFor maps an ApiError to the process exit code (exit_codes.h).
//
// Only http:// is supported for now. An ApiClient is not thread-safe; use one per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "base/status.h"
#include "cli/api_json.h"
#include "cli/cli_config.h"

namespace httplib {
class Client;
}

namespace ferry::cli {

struct ApiError {
  enum class Kind { kHttp, kUnreachable, kBadResponse, kLocal };
  Kind kind = Kind::kLocal;
  int http_status = 0;  // 0 unless kHttp (or kBadResponse to a status)
  std::string code;     // the server's code ("InvalidState"), or a local one ("NotFound")
  std::string message;
  std::string action;  // what to do about it; may be empty

  // "InvalidState: item web1 is Committed; to do: reprotect it first"
  std::string ToString() const;
};

// A local error, e.g. {"NotFound", "no item named web9"}.
ApiError LocalError(std::string code, std::string message, std::string action = {});

// The process exit code for an error: 401 -> 7, 404 -> 3, 409 -> 4, 400/413 -> 10,
// unreachable -> 8, anything else -> 1. Local errors map by their code the same way.
int ExitCodeFor(const ApiError& error);

// Either a T or an ApiError.
template <typename T>
class [[nodiscard]] ApiOr {
 public:
  ApiOr(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  ApiOr(ApiError error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return std::holds_alternative<T>(v_); }
  const ApiError& error() const { return std::get<ApiError>(v_); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, ApiError> v_;
};

// "http://host:7700/prefix" -> {host, 7700, "/prefix"}. The port defaults to 80; IPv6 hosts
// are written in brackets. https:// is refused (kInvalidArgument: not supported yet).
struct ServerUrl {
  std::string host;
  int port = 80;
  std::string base_path;  // "" or "/something", no trailing slash
};
Result<ServerUrl> ParseServerUrl(const std::string& url);

// Percent-encodes everything but RFC 3986 unreserved characters (for query values and ids).
std::string UrlEncode(const std::string& text);

// Query parameters, sent in order; pairs with an empty value are left out.
using Query = std::vector<std::pair<std::string, std::string>>;

class ApiClient {
 public:
  // kInvalidArgument for a server URL that ParseServerUrl refuses (naming its source).
  static Result<ApiClient> Create(const Connection& connection);
  ApiClient(ApiClient&&) noexcept;
  ApiClient& operator=(ApiClient&&) noexcept;
  ~ApiClient();

  // Paths are relative to /api/v1: Get("/items/item-1").
  ApiOr<json> Get(const std::string& path, const Query& query = {});
  ApiOr<json> Post(const std::string& path, const json& body = json::object());
  ApiOr<json> Patch(const std::string& path, const json& body);
  ApiOr<json> Put(const std::string& path, const json& body);
  ApiOr<json> Delete(const std::string& path);

  // A paged list (`{"items": [...], "next_page_token": "..."}`), following next_page_token
  // until the last page, or until `limit` items when limit > 0. Returns the same shape:
  // every item fetched, and the token to continue from ("" when the list is complete).
  ApiOr<json> List(const std::string& path, Query query = {}, int64_t limit = 0);

  const Connection& connection() const { return connection_; }

 private:
  ApiClient(Connection connection, ServerUrl url);
  ApiOr<json> Send(const char* method, const std::string& path, const Query& query, const json* body);

  Connection connection_;
  ServerUrl url_;
  std::unique_ptr<httplib::Client> http_;
};

}  // namespace ferry::cli
