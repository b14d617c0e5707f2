// FollowJob: polls GET /jobs/ID until the job ends or waits for a person (Suspended), and
// shows its progress as job_view.h draws it: a line redrawn in place on a terminal, one line
// per state change otherwise. Used by `--wait` and `ferry job watch`.
//
// Stopping (stop_requested, e.g. Ctrl-C) stops the watching only; the job goes on at the
// server. When the server stops answering after the first poll (restarting, say) the follower
// keeps trying for unreachable_grace_ms, then returns the error (kUnreachable); any other
// error, or no answer to the first poll, returns at once.
// Not thread-safe; blocks the calling thread.
#pragma once

#include <cstdio>
#include <functional>
#include <string>

#include "cli/client.h"

namespace ferry::cli {

struct FollowOptions {
  std::FILE* out = stdout;  // nullptr: show nothing (--output json)
  bool tty = false;         // redraw one line with '\r' instead of printing changes
  size_t width = 80;        // terminal columns, for the redrawn line
  int poll_interval_ms = 500;
  int unreachable_grace_ms = 30000;
  std::function<bool()> stop_requested;  // may be empty
};

struct FollowedJob {
  json job;                  // the last state seen
  bool interrupted = false;  // stop_requested said so before the job stopped
};

ApiOr<FollowedJob> FollowJob(ApiClient& client, const std::string& job_id, const FollowOptions& options);

}  // namespace ferry::cli
