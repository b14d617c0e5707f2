#include "journal/block_runs.h"

namespace ferry::journal {

nlohmann::json BlockRunsToJson(std::span<const BlockRun> runs) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [first, count] : runs) out.push_back({first, count});
  return out;
}

Result<std::vector<BlockRun>> BlockRunsFromJson(const nlohmann::json& j, uint64_t blocks,
                                                const std::string& what) {
  if (!j.is_array()) return InvalidArgument(what + ": runs are not an array");
  std::vector<BlockRun> runs;
  try {
    uint64_t end = 0;
    for (const nlohmann::json& r : j) {
      if (!r.is_array() || r.size() != 2) {
        return InvalidArgument(what + ": a run is not a [first, count] pair");
      }
      const uint64_t first = r.at(0).get<uint64_t>(), count = r.at(1).get<uint64_t>();
      if (count == 0 || first < end || first + count < first) {
        return InvalidArgument(what + ": runs must ascend and not overlap (run " +
                               std::to_string(first) + "+" + std::to_string(count) + ")");
      }
      if (blocks > 0 && (first > blocks || count > blocks - first)) {
        return InvalidArgument(what + ": run " + std::to_string(first) + "+" + std::to_string(count) +
                               " is past the volume's " + std::to_string(blocks) + " blocks");
      }
      end = first + count;
      runs.push_back({first, count});
    }
  } catch (const std::exception& e) {
    return InvalidArgument(what + ": " + e.what());
  }
  return runs;
}

}  // namespace ferry::journal
