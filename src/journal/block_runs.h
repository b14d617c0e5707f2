// Runs of blocks, (first block, count), as files and messages store them: a JSON array of
// [first, count] pairs in ascending order. Used by an overlay's DIVERGED file and by a seed's
// known changes (SEED-CHANGES, and WELCOME on the link).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace ferry::journal {

using BlockRun = std::pair<uint64_t, uint64_t>;  // (first block, count)

nlohmann::json BlockRunsToJson(std::span<const BlockRun> runs);

// The runs of j, which must ascend without overlapping, each of at least one block and, when
// blocks > 0, inside the first `blocks` blocks. kInvalidArgument naming `what` otherwise (also
// for JSON that is not such an array).
Result<std::vector<BlockRun>> BlockRunsFromJson(const nlohmann::json& j, uint64_t blocks,
                                                const std::string& what);

}  // namespace ferry::journal
