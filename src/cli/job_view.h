// How a followed job looks (`--wait`, `ferry job watch`): pure functions of the job's JSON
// (docs/protocols/server-api.md, "Jobs"), so that the follower (job_follow.h) only polls and
// prints.
//
//   on a terminal, one line redrawn in place:
//     [########............]  42.5%  2/5 Copy disks: disk0 12 GiB of 40 GiB
//   otherwise, one line per change of the job's or a step's state:
//     job-4 failover web1: InProgress
//     [1/5] Pre-flight checks: InProgress
//     [1/5] Pre-flight checks: Succeeded (0.2s)
//   and at the end, a summary: the final state, each step with its duration, the error and
//   what to do about it.
#pragma once

#include <string>
#include <vector>

#include "cli/api_json.h"

namespace ferry::cli {

// Succeeded, Failed, Cancelled: the job will not change any more.
bool IsFinalJobState(const std::string& state);
// Whether a follower stops here: a final state, or Suspended (it waits for a person).
bool StopsFollowing(const json& job);
// The exit code of `--wait` for a job in this state: Succeeded 0, Failed 5, Cancelled 6,
// Suspended 9, anything else 1.
int ExitCodeForJobState(const std::string& state);

// The index of the step the job is at: the first InProgress or Suspended one, else the last
// one that started; -1 when none has.
int CurrentStep(const json& job);

// The terminal line: bar, percent, step k/n, its title and message; cut to `width` columns.
std::string ProgressLine(const json& job, size_t width);

// The lines (without '\n') that tell what changed from `before` (nullptr: nothing seen yet)
// to `after`: the job's state, then each step whose state changed, in step order.
std::vector<std::string> ChangeLines(const json* before, const json& after);

// The final report, '\n'-terminated lines.
std::string JobSummary(const json& job);

}  // namespace ferry::cli
