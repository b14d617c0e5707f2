#include "cli/arguments.h"

#include <algorithm>
#include <cctype>

#include "cli/format.h"

namespace ferry::cli {

Result<DiskSpec> ParseDiskSpec(const std::string& text) {
  const std::string form = " (expected NAME=PATH[,size=BYTES], e.g. disk0=/srv/web1-disk0.img,size=10G)";
  DiskSpec d;
  size_t comma = text.find(',');
  std::string first = text.substr(0, comma);
  size_t eq = first.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == first.size()) {
    return InvalidArgument("--disk '" + text + "'" + form);
  }
  d.name = first.substr(0, eq);
  d.path = first.substr(eq + 1);
  while (comma != std::string::npos) {
    size_t next = text.find(',', comma + 1);
    std::string option =
        text.substr(comma + 1, next == std::string::npos ? std::string::npos : next - comma - 1);
    comma = next;
    if (option.rfind("size=", 0) != 0) {
      return InvalidArgument("--disk '" + text + "': unknown part '" + option + "'" + form);
    }
    if (!ParseBytes(option.substr(5), &d.size) || d.size == 0) {
      return InvalidArgument("--disk '" + text + "': '" + option.substr(5) + "' is not a size" + form);
    }
  }
  return d;
}

Result<int64_t> ParseSeconds(const std::string& text) {
  if (!text.empty() && text.size() <= 12 &&
      std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return static_cast<int64_t>(std::stoll(text));
  }
  int64_t nanos = 0;
  if (!ParseDuration(text, &nanos)) {
    return InvalidArgument("'" + text + "' is not a number of seconds (e.g. 60, 90s, 15m, 2h, 1d)");
  }
  return nanos / 1'000'000'000;
}

}  // namespace ferry::cli
