#include "cli/job_follow.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "cli/job_view.h"

namespace ferry::cli {

namespace {

constexpr int kSleepSliceMs = 50;  // how soon a stop request is noticed

bool Stopped(const FollowOptions& o) { return o.stop_requested && o.stop_requested(); }

// Sleeps up to ms; false when a stop was requested meanwhile.
bool Pause(const FollowOptions& o, int ms) {
  for (int slept = 0; slept < ms; slept += kSleepSliceMs) {
    if (Stopped(o)) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(kSleepSliceMs, ms - slept)));
  }
  return !Stopped(o);
}

}  // namespace

ApiOr<FollowedJob> FollowJob(ApiClient& client, const std::string& job_id, const FollowOptions& o) {
  FollowedJob result;
  bool seen = false;
  bool drawn = false;  // a redrawn line is on the terminal, without its '\n'
  int unreachable_ms = 0;
  auto end_line = [&] {
    if (drawn) std::fputc('\n', o.out);
    drawn = false;
    if (o.out) std::fflush(o.out);
  };
  const std::string path = "/jobs/" + UrlEncode(job_id);
  for (;;) {
    if (Stopped(o)) break;
    ApiOr<json> got = client.Get(path);
    if (!got.ok()) {
      if (Stopped(o)) break;
      const ApiError& e = got.error();
      if (!seen || e.kind != ApiError::Kind::kUnreachable || unreachable_ms >= o.unreachable_grace_ms) {
        end_line();
        return e;
      }
      if (unreachable_ms == 0 && o.out) {
        std::string note =
            "server unreachable; retrying for up to " + std::to_string(o.unreachable_grace_ms / 1000) + "s";
        if (o.tty) {
          std::fprintf(o.out, "\r%s\x1b[K", note.substr(0, o.width).c_str());
          drawn = true;
        } else {
          std::fprintf(o.out, "%s\n", note.c_str());
        }
        std::fflush(o.out);
      }
      unreachable_ms += o.poll_interval_ms;
      if (!Pause(o, o.poll_interval_ms)) break;
      continue;
    }
    unreachable_ms = 0;
    json job = std::move(got).value();
    if (o.out && o.tty) {
      std::fprintf(o.out, "\r%s\x1b[K", ProgressLine(job, o.width > 1 ? o.width - 1 : o.width).c_str());
      std::fflush(o.out);
      drawn = true;
    } else if (o.out) {
      for (const std::string& line : ChangeLines(seen ? &result.job : nullptr, job)) {
        std::fprintf(o.out, "%s\n", line.c_str());
      }
      std::fflush(o.out);
    }
    result.job = std::move(job);
    seen = true;
    if (StopsFollowing(result.job)) {
      end_line();
      return result;
    }
    if (!Pause(o, o.poll_interval_ms)) break;
  }
  end_line();
  result.interrupted = true;
  return result;
}

}  // namespace ferry::cli
