// Small output helpers shared by the CLI commands: sizes, times, and table/json choice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::cli {

// "1.5 GiB"
std::string HumanBytes(uint64_t bytes);
// Parses "512", "64K", "10M", "1G", "2T" (binary units). False if malformed.
bool ParseBytes(const std::string& text, uint64_t* bytes);
// Parses "90s", "15m", "2h", "7d" into nanoseconds. False if malformed.
bool ParseDuration(const std::string& text, int64_t* nanos);

// Rows as an aligned table with a header line: columns two spaces apart, the last one not
// padded, no trailing blanks; every line ends with '\n'.
std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);
// Prints FormatTable to stdout.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);

}  // namespace ferry::cli
