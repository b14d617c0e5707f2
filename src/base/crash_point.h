// Crash points: named places in production code where a test can make the process die at
// once (SIGKILL, no cleanup), to prove that what was persisted before is enough to go on.
// Switched on by the environment variable FERRY_CRASH_AT, a comma-separated list of names;
// unset (always, outside tests) they cost one comparison against an empty list.
#pragma once

#include <string_view>

namespace ferry {

void CrashPoint(std::string_view name);

}  // namespace ferry
