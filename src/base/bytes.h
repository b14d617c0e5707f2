// Byte-buffer helpers shared by the journal, the capture and the link.
#pragma once

#include <string_view>

namespace ferry {

// True when every byte of data is 0 (true for an empty view). Vectorised; stops at the
// first non-zero byte.
bool IsAllZero(std::string_view data);

}  // namespace ferry
