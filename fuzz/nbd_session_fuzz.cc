// Fuzzes the NBD server's session — handshake options and transmission requests — with what a
// hostile or broken client could send.
//
// The first input byte picks how the rest becomes the client's byte stream:
//   0  raw: the bytes as they are (the handshake parser sees everything);
//   1  a valid handshake chosen by the input (flags, structured replies, meta context, GO on
//      a writable, read-only or unknown export), then raw bytes (the request parser);
//   2  that handshake, then well-formed requests with fuzzed type, flags, offset, length and
//      payload (payloads may be short), so the commands themselves are exercised.
// The stream goes over a socketpair to a Session serving in-memory exports; the client then
// shuts its write side and drains replies. The session must end on its own — no crash, no
// hang, no sanitizer report — whatever it was sent.
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/socket.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "nbd/memory_export.h"
#include "nbd/session.h"

using namespace ferry;
using namespace ferry::nbd;

namespace {

constexpr uint64_t kExportSize = 16 * 1024;  // four blocks: enough for mixed extents

std::string Handshake(FuzzedDataProvider& in, bool* structured) {
  std::string s;
  AppendBe<uint32_t>(&s, kClientFlagFixedNewstyle | (in.ConsumeBool() ? kClientFlagNoZeroes : 0));
  auto option = [&](uint32_t opt, const std::string& data) {
    AppendBe<uint64_t>(&s, kMagicOption);
    AppendBe<uint32_t>(&s, opt);
    AppendBe<uint32_t>(&s, static_cast<uint32_t>(data.size()));
    s += data;
  };
  static const char* const kNames[] = {"", "ro", "nosuch"};
  std::string name = kNames[in.ConsumeIntegralInRange(0, 2)];
  *structured = in.ConsumeBool();
  if (*structured) option(kOptStructuredReply, "");
  if (*structured && in.ConsumeBool()) {
    std::string d;
    AppendBe<uint32_t>(&d, static_cast<uint32_t>(name.size()));
    d += name;
    AppendBe<uint32_t>(&d, 1);
    AppendBe<uint32_t>(&d, static_cast<uint32_t>(sizeof kMetaBaseAllocation - 1));
    d += kMetaBaseAllocation;
    option(kOptSetMetaContext, d);
  }
  if (in.ConsumeBool()) {
    option(kOptExportName, name);
  } else {
    std::string d;
    AppendBe<uint32_t>(&d, static_cast<uint32_t>(name.size()));
    d += name;
    AppendBe<uint16_t>(&d, 0);
    option(kOptGo, d);
  }
  return s;
}

// Requests near the interesting edges: inside the export, at its end, past it, huge.
std::string Requests(FuzzedDataProvider& in) {
  std::string s;
  for (uint64_t cookie = 0; in.remaining_bytes() > 0 && cookie < 64; ++cookie) {
    uint16_t type = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint16_t>(0, 7) : in.ConsumeIntegral<uint16_t>();
    uint16_t flags = in.ConsumeBool() ? 0 : in.ConsumeIntegral<uint16_t>();
    uint64_t offset = 0;
    uint32_t length = 0;
    switch (in.ConsumeIntegralInRange(0, 2)) {
      case 0:
        offset = in.ConsumeIntegralInRange<uint64_t>(0, kExportSize);
        length = in.ConsumeIntegralInRange<uint32_t>(0, 8192);
        break;
      case 1:
        offset = kExportSize - in.ConsumeIntegralInRange<uint64_t>(0, 16);
        length = in.ConsumeIntegralInRange<uint32_t>(0, 32);
        break;
      default:
        offset = in.ConsumeIntegral<uint64_t>();
        length = in.ConsumeIntegral<uint32_t>();
        break;
    }
    AppendBe<uint32_t>(&s, kMagicRequest);
    AppendBe<uint16_t>(&s, flags);
    AppendBe<uint16_t>(&s, type);
    AppendBe<uint64_t>(&s, cookie);
    AppendBe<uint64_t>(&s, offset);
    AppendBe<uint32_t>(&s, length);
    if (type == kCmdWrite) s += in.ConsumeBytesAsString(std::min<size_t>(length, 4096));
  }
  return s;
}

// The client side, on one long-lived thread (threads are costly under ASan, and the session
// already starts its workers per input): sends the stream, shuts its write side, then reads
// replies until the server hangs up, and closes the socket.
class Client {
 public:
  Client() : thread_([this] { Loop(); }) { thread_.detach(); }
  void Start(int fd, std::string stream) {
    std::lock_guard l(mu_);
    fd_ = fd;
    stream_ = std::move(stream);
    done_ = false;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return done_; });
  }

 private:
  void Loop() {
    for (;;) {
      int fd;
      std::string stream;
      {
        std::unique_lock l(mu_);
        cv_.wait(l, [&] { return fd_ >= 0; });
        fd = std::exchange(fd_, -1);
        stream = std::move(stream_);
      }
      {
        Socket socket(fd);
        (void)socket.WriteAll(stream);  // fails once the server hung up: fine
        ::shutdown(fd, SHUT_WR);
        char buf[16384];
        for (;;) {
          ssize_t r = ::recv(fd, buf, sizeof buf, 0);
          if (r > 0 || (r < 0 && errno == EINTR)) continue;
          break;
        }
      }
      std::lock_guard l(mu_);
      done_ = true;
      cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  int fd_ = -1;
  std::string stream_;
  bool done_ = true;
  std::thread thread_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  std::string stream;
  switch (in.ConsumeIntegralInRange(0, 2)) {
    case 0:
      stream = in.ConsumeRemainingBytesAsString();
      break;
    case 1: {
      bool structured = false;
      stream = Handshake(in, &structured);
      stream += in.ConsumeRemainingBytesAsString();
      break;
    }
    default: {
      bool structured = false;
      stream = Handshake(in, &structured);
      stream += Requests(in);
      break;
    }
  }

  std::string disk(kExportSize, '\0');
  for (size_t i = 0; i < disk.size() / 2; ++i) disk[i] = static_cast<char>(i * 7);
  auto catalog = std::make_shared<MemoryCatalog>();
  catalog->Add("", std::make_shared<MemoryExport>(disk, false, "rw"));
  catalog->Add("ro", std::make_shared<MemoryExport>(disk, true, "ro"));
  ServerOptions options;
  options.workers_per_connection = 1;  // a reader and a worker: still concurrent, and cheap
  options.max_inflight_per_connection = 4;
  options.max_inflight_bytes_per_connection = 8192;
  Server server(catalog, options);  // owns the statistics the session updates

  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 0;
  Session session(&server, catalog.get(), std::make_unique<Socket>(fds[0]), options);
  static Client& client = *new Client;  // never destroyed: its thread outlives main
  client.Start(fds[1], std::move(stream));
  (void)session.Run();  // must return: the client has stopped sending
  client.Wait();
  return 0;
}
