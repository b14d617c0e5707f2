// The exit codes of the `ferry` verbs that drive the control plane, so that scripts can tell
// "not found" from "refused in this state" from "the job failed" without parsing messages.
// The list is part of the CLI's interface (docs/cli.md): numbers are never reused.
#pragma once

namespace ferry::cli::exit_code {

inline constexpr int kOk = 0;               // success; with --wait: the job Succeeded
inline constexpr int kError = 1;            // any other error
inline constexpr int kUsage = 2;            // the command line itself is wrong (CLI11)
inline constexpr int kNotFound = 3;         // 404: no such site, node, item, job, ...
inline constexpr int kRefused = 4;          // 409: refused by the state or a precondition
inline constexpr int kJobFailed = 5;        // --wait: the job Failed
inline constexpr int kJobCancelled = 6;     // --wait: the job was Cancelled
inline constexpr int kUnauthenticated = 7;  // 401: missing or wrong API token
inline constexpr int kUnreachable = 8;      // no answer from the server
inline constexpr int kJobSuspended = 9;     // --wait: the job waits for a manual action
inline constexpr int kBadRequest = 10;      // 400 / 413: the server refused the request
inline constexpr int kNotReady = 11;        // ferry plan readiness: the plan has problems
inline constexpr int kInterrupted = 130;    // Ctrl-C while following a job (it goes on)

}  // namespace ferry::cli::exit_code
