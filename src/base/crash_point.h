// Crash points: named places in production code where a test can make the process die at
// once (SIGKILL, no cleanup), to prove that what was persisted before is enough to go on.
// Switched on by the environment variable FERRY_CRASH_AT, a comma-separated list of names
// (an entry "P.*" names every point under P, e.g. "job.commit.*"); unset (always, outside
// tests) they cost one comparison against an empty list.
//
// Hold points: the same names, switched on by FERRY_HOLD_AT; the caller keeps the work named
// there from going on (the job engine keeps a step waiting, so that a test can cancel a job
// at exactly that step: control/jobs.h). The variable is read at every check, so that a unit
// test can set and clear it; it costs one getenv per check.
#pragma once

#include <string_view>

namespace ferry {

void CrashPoint(std::string_view name);

// True when FERRY_HOLD_AT lists name.
bool HoldPoint(std::string_view name);

}  // namespace ferry
