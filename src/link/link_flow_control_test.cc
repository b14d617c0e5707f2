// Flow control (sender.h, "Memory"): a target that stops acknowledging holds the source to
// its window, so the source neither sends nor reads more of its pending log; when the
// acknowledgements come again the link catches up and the target equals the source.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "link/link_test_util.h"

namespace ferry::link {
namespace {

using e2e::Block;
using e2e::Eventually;
using e2e::kBs;
using e2e::LinkTest;
using e2e::Target;
using journal::MarkerKind;

// The source's side of a connection: counts what the source sends and, while held, keeps
// what the target sends back (its acknowledgements) from reaching the source.
class HeldAcksStream : public Stream {
 public:
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    bool hold = false;
    uint64_t sent = 0;
  };

  HeldAcksStream(std::unique_ptr<Stream> s, std::shared_ptr<Shared> shared)
      : s_(std::move(s)), shared_(std::move(shared)) {}

  Status ReadFull(void* dst, size_t n) override {
    RETURN_IF_ERROR(s_->ReadFull(dst, n));
    std::unique_lock l(shared_->mu);
    shared_->cv.wait(l, [&] { return !shared_->hold || closed_; });
    return Status::Ok();
  }
  Status WriteAll(std::string_view data) override {
    RETURN_IF_ERROR(s_->WriteAll(data));
    Count(data.size());
    return Status::Ok();
  }
  Status WriteAllV(std::span<const std::string_view> pieces) override {
    RETURN_IF_ERROR(s_->WriteAllV(pieces));
    size_t n = 0;
    for (std::string_view p : pieces) n += p.size();
    Count(n);
    return Status::Ok();
  }
  void Shutdown() override {
    {
      std::lock_guard l(shared_->mu);
      closed_ = true;
    }
    shared_->cv.notify_all();
    s_->Shutdown();
  }
  std::string PeerName() const override { return s_->PeerName(); }

 private:
  void Count(size_t n) {
    std::lock_guard l(shared_->mu);
    shared_->sent += n;
  }

  std::unique_ptr<Stream> s_;
  std::shared_ptr<Shared> shared_;
  bool closed_ = false;  // guarded by shared_->mu
};

TEST_F(LinkTest, StalledTargetHoldsTheSourceToItsWindow) {
  constexpr size_t kWindow = 1 << 20, kBatch = 256 << 10;
  Target target(dir_ + "/target");
  auto shared = std::make_shared<HeldAcksStream::Shared>();
  SenderConfig c = Config(target.port());
  c.codecs = {"none"};  // bytes on the wire are the records' bytes
  c.window_bytes = kWindow;
  c.batch_bytes = kBatch;
  c.dead_after_ms = 10 * 60'000;  // held acknowledgements must not look like a dead target
  c.connect = [port = target.port(), shared]() -> Result<std::unique_ptr<Stream>> {
    ASSIGN_OR_RETURN(auto s, ConnectTcp("127.0.0.1", port));
    return std::unique_ptr<Stream>(new HeldAcksStream(std::move(s), shared));
  };
  sender_ = std::make_unique<LinkSender>(c, log_);
  sender_->Start();
  auto replica = TargetReplica(target);
  ASSERT_TRUE(replica);
  ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
  auto m0 = splitter_->Mark(MarkerKind::kCrashConsistent, "before");
  ASSERT_TRUE(m0.ok());
  ASSERT_TRUE(sender_->WaitAcked(*m0, 30'000));

  // The target stops acknowledging; the machine writes 16 times the window.
  uint64_t at_hold;
  {
    std::lock_guard l(shared->mu);
    shared->hold = true;
    at_hold = shared->sent;
  }
  auto sent_since = [&] {
    std::lock_guard l(shared->mu);
    return shared->sent - at_hold;
  };
  for (uint64_t b = 0; b < 16 * kWindow / kBs; ++b) {
    ASSERT_TRUE(splitter_->Write(b * kBs, Block(40'000 + b), false).ok());
  }
  auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "after");
  ASSERT_TRUE(m.ok());
  // The source fills its window: what it had in flight, then batches until the window is
  // full, the last of which may cross it (records, their wire headers, frame headers).
  ASSERT_TRUE(Eventually([&] { return sent_since() >= kWindow / 2; }));
  const uint64_t bound = kWindow + kBatch + 64 * 1024;
  for (int i = 0; i < 100; ++i) {  // a second of watching: it must send no more
    ASSERT_LE(sent_since(), bound) << "the source sent past its window";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Nor did it take more of its pending log than it could send.
  const LinkStatus held = sender_->status();
  EXPECT_LT(held.sent_seq, *m0 + 1 + bound / kBs) << "sent_seq " << held.sent_seq;
  EXPECT_EQ(held.acked_seq, *m0);
  EXPECT_EQ(held.state, "replicating");

  // Acknowledgements flow again: the link catches up.
  {
    std::lock_guard l(shared->mu);
    shared->hold = false;
  }
  shared->cv.notify_all();
  ASSERT_TRUE(sender_->WaitAcked(*m, 60'000)) << "acked " << sender_->status().acked_seq;
  ExpectSame(*replica, *m);
  EXPECT_EQ(sender_->status().connects, 1u) << "the held link was dropped and reconnected";
}

}  // namespace
}  // namespace ferry::link
