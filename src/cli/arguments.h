// Parsing the values of the control-plane verbs' flags that are richer than a string or a
// number. Errors are kInvalidArgument with a message that shows the expected form.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace ferry::cli {

// `--disk NAME=PATH[,size=BYTES]` of `ferry machine create`; BYTES as ParseBytes takes it
// ("1073741824", "10G"). A PATH cannot contain ','.
struct DiskSpec {
  std::string name;
  std::string path;
  uint64_t size = 0;  // 0: not given (the file exists)
};
Result<DiskSpec> ParseDiskSpec(const std::string& text);

// A number of seconds: "60", or with a unit: "90s", "15m", "2h", "1d".
Result<int64_t> ParseSeconds(const std::string& text);

}  // namespace ferry::cli
