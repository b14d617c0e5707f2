#include "launch/qmp.h"

#include <chrono>

#include "launch/timed_socket.h"

namespace ferry::launch {

namespace {

constexpr size_t kMaxLine = 1 << 20;  // a QMP reply of ours is small; a megabyte is no QMP

std::string StringField(const nlohmann::json& j, const char* key, const char* fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

}  // namespace

Result<std::unique_ptr<QmpClient>> QmpClient::Connect(const std::string& socket_path, int64_t timeout_ms) {
  auto sock = ConnectUnix(socket_path);
  if (!sock.ok()) return Unavailable("QMP " + socket_path + ": " + std::string(sock.status().message()));
  std::unique_ptr<QmpClient> c(new QmpClient(std::move(*sock), timeout_ms));
  ASSIGN_OR_RETURN(nlohmann::json greeting, c->ReadMessage());
  if (!greeting.contains("QMP")) return IoError("QMP " + socket_path + ": no greeting but " + greeting.dump());
  RETURN_IF_ERROR(c->Execute("qmp_capabilities").status());
  return c;
}

Result<nlohmann::json> QmpClient::ReadMessage() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) return IoError("QMP: not a JSON object: " + line.substr(0, 200));
      return j;
    }
    if (buffer_.size() > kMaxLine) return IoError("QMP: a line longer than 1 MiB");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return Unavailable("QMP: QEMU did not answer within " + std::to_string(timeout_ms_) + " ms");
    auto got = ReadSomeWithin(*socket_, 64 << 10, left);
    if (!got.ok()) {
      if (got.status().code() == Code::kUnavailable) {
        return Unavailable("QMP: QEMU did not answer within " + std::to_string(timeout_ms_) + " ms");
      }
      if (got.status().code() == Code::kAborted) return Aborted("QMP: QEMU closed the connection");
      return got.status();
    }
    buffer_ += *got;
  }
}

Result<nlohmann::json> QmpClient::Execute(const std::string& command, const nlohmann::json& arguments) {
  nlohmann::json request = {{"execute", command}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  Status w = socket_->WriteAll(request.dump() + "\n");
  if (!w.ok()) {
    if (w.code() == Code::kAborted) return Aborted("QMP " + command + ": QEMU closed the connection");
    return w;
  }
  for (;;) {
    auto m = ReadMessage();
    if (!m.ok()) return m.status().WithContext("QMP " + command);
    if (m->contains("event")) continue;  // asynchronous: SHUTDOWN, POWERDOWN, RESET, ...
    if (auto r = m->find("return"); r != m->end()) return *r;
    if (auto e = m->find("error"); e != m->end()) {
      return FailedPrecondition("QMP " + command + ": " + StringField(*e, "class", "Error") + ": " +
                                StringField(*e, "desc", "(no description)"));
    }
    return IoError("QMP " + command + ": unexpected reply " + m->dump().substr(0, 200));
  }
}

Result<std::string> QmpClient::QueryStatus() {
  ASSIGN_OR_RETURN(nlohmann::json r, Execute("query-status"));
  std::string status = StringField(r, "status", "");
  if (status.empty()) return IoError("QMP query-status: no status in " + r.dump());
  return status;
}

Status QmpClient::SystemPowerdown() { return Execute("system_powerdown").status(); }

Status QmpClient::Quit() {
  auto r = Execute("quit");
  if (!r.ok() && r.status().code() == Code::kAborted) return Status::Ok();
  return r.status();
}

}  // namespace ferry::launch
