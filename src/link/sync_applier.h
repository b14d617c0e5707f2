// SyncApplier: runs jobs one at a time, in order, on a thread of its own. The link receiver
// writes each initial-sync frame into the base on it while its connection's thread reads,
// decrypts and checks the next frame, so the two overlap (link.md, "Initial sync").
//
// Ownership: a job's captures must live until the job has run; Wait (or the next Submit)
// tells the caller when. The receiver relies on the frame reader keeping a payload valid until
// the second Read after it: the job for frame N is done before frame N+2 is read.
// Thread-safety: Submit and Wait are called from one thread (the owner); jobs run on the
// applier's thread. Whatever a job touches, the owner touches only after a Wait (or a Submit),
// which orders the two.
// Errors: the first job that fails makes its Status sticky: every later Wait and Submit
// returns it, and no further job runs.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "base/status.h"

namespace ferry::link {

class SyncApplier {
 public:
  using Job = std::function<Status()>;
  SyncApplier() = default;
  SyncApplier(const SyncApplier&) = delete;
  SyncApplier& operator=(const SyncApplier&) = delete;
  // Waits for the job in flight, then ends the thread.
  ~SyncApplier() {
    {
      std::unique_lock l(mu_);
      done_.wait(l, [&] { return !busy_; });
      stop_ = true;
    }
    start_.notify_one();
    if (thread_.joinable()) thread_.join();
  }
  // Waits for the job in flight; returns the first failure of any job so far (Ok if none).
  Status Wait() {
    std::unique_lock l(mu_);
    done_.wait(l, [&] { return !busy_; });
    return failed_;
  }
  // Waits for the job in flight, then starts job, unless a job has failed: that failure is
  // returned and job does not run. The thread starts with the first job.
  Status Submit(Job job) {
    std::unique_lock l(mu_);
    done_.wait(l, [&] { return !busy_; });
    if (!failed_.ok()) return failed_;
    job_ = std::move(job);
    busy_ = true;
    if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
    l.unlock();
    start_.notify_one();
    return Status::Ok();
  }

 private:
  std::mutex mu_;
  std::condition_variable start_, done_;
  Job job_;            // the job to start (guarded by mu_)
  bool busy_ = false;  // a job was submitted and has not finished
  bool stop_ = false;
  Status failed_;
  std::thread thread_;

  void Loop() {
    std::unique_lock l(mu_);
    for (;;) {
      start_.wait(l, [&] { return stop_ || job_ != nullptr; });
      if (job_ == nullptr) return;
      Job job = std::move(job_);
      job_ = nullptr;
      l.unlock();
      Status s = job();
      job = nullptr;  // its captures go before the owner hears it finished
      l.lock();
      if (!s.ok() && failed_.ok()) failed_ = s;
      busy_ = false;
      done_.notify_all();
    }
  }
};

}  // namespace ferry::link
