#include "launch/probe.h"

#include <regex>

#include "launch/timed_socket.h"

namespace ferry::launch {

namespace {

constexpr uint64_t kConsoleScanBytes = 16ull << 20;
constexpr int64_t kTcpTimeoutMs = 1000;

// Printable, one line, at most 60 characters: for a detail line.
std::string Printable(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\n' || c == '\r') break;
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (out.size() >= 60) break;
  }
  return out;
}

ProbeResult ConsoleProbe(Env* env, const std::string& path, const std::string& pattern) {
  std::regex re;
  try {
    re = std::regex(pattern, std::regex::extended);
  } catch (const std::regex_error& e) {
    return {false, "console_regex '" + pattern + "' is invalid: " + e.what()};
  }
  auto file = env->OpenFile(path, OpenMode::kRead);
  if (!file.ok()) return {false, "console: no output yet"};
  std::string pending;
  uint64_t offset = 0;
  int64_t line_no = 0;
  auto matches = [&](std::string line) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return std::regex_search(line, re);
  };
  std::string chunk(64 << 10, '\0');
  while (offset < kConsoleScanBytes) {
    auto got = (*file)->ReadAt(offset, chunk.size(), chunk.data());
    if (!got.ok()) return {false, "console: " + got.status().ToString()};
    if (*got == 0) break;
    offset += *got;
    pending.append(chunk.data(), *got);
    size_t begin = 0;
    for (size_t nl; (nl = pending.find('\n', begin)) != std::string::npos; begin = nl + 1) {
      if (matches(pending.substr(begin, nl - begin))) {
        return {true, "console matched '" + pattern + "' at line " + std::to_string(line_no)};
      }
    }
    pending.erase(0, begin);
  }
  // The last line may be incomplete; it counts: the console may end without a newline.
  if (!pending.empty() && matches(pending)) {
    return {true, "console matched '" + pattern + "' at line " + std::to_string(line_no)};
  }
  if (offset >= kConsoleScanBytes) {
    return {false, "console: no line matches '" + pattern + "' in the first 16 MiB"};
  }
  return {false, "console: no line matches '" + pattern + "' yet (" + std::to_string(line_no) + " lines)"};
}

ProbeResult TcpProbe(const std::string& address) {
  if (address.empty()) return {false, "tcp: no address to probe (the machine has no known IP address)"};
  std::string host;
  uint16_t port;
  Status s = SplitHostPort(address, &host, &port);
  if (!s.ok()) return {false, "tcp: " + std::string(s.message())};
  auto sock = ConnectTcpWithin(host, port, kTcpTimeoutMs);
  if (!sock.ok()) return {false, "tcp " + address + ": " + std::string(sock.status().message())};
  auto got = ReadSomeWithin(**sock, 256, kTcpTimeoutMs);
  if (!got.ok()) {
    const std::string why = got.status().code() == Code::kUnavailable
                                ? "connected, but the machine sent nothing within 1 s (its service must send a banner)"
                                : "connected, then " + std::string(got.status().message()) +
                                      " before the machine sent a byte (nothing listens in it yet?)";
    return {false, "tcp " + address + ": " + why};
  }
  return {true, "tcp " + address + " sent '" + Printable(*got) + "'"};
}

}  // namespace

ProbeResult RunProbe(Env* env, const ProbeTarget& target) {
  std::vector<ProbeResult> parts;
  if (!target.console_regex.empty()) parts.push_back(ConsoleProbe(env, target.console_path, target.console_regex));
  if (target.tcp_port > 0) parts.push_back(TcpProbe(target.tcp_address));
  if (parts.empty()) return {true, "no probe"};
  ProbeResult r{true, ""};
  for (const auto& p : parts) {
    r.ok = r.ok && p.ok;
    r.detail += (r.detail.empty() ? "" : "; ") + p.detail;
  }
  return r;
}

}  // namespace ferry::launch
