#include "journal/manifest.h"

#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/checksum.h"

namespace ferry::journal {

using nlohmann::json;

std::string FrameWithChecksum(const std::string& body) {
  char line[40];
  snprintf(line, sizeof line, "checksum %016" PRIx64 "\n", Checksum64(body));
  return body + "\n" + line;
}

Result<std::string> UnframeChecksum(std::string_view text, std::string_view file_name) {
  std::string name(file_name);
  size_t nl = text.find('\n');
  if (nl == std::string_view::npos) return DataLoss(name + ": no checksum line");
  std::string_view body = text.substr(0, nl);
  std::string_view rest = text.substr(nl + 1);
  char expect[40];
  snprintf(expect, sizeof expect, "checksum %016" PRIx64 "\n", Checksum64(body));
  if (rest != expect) return DataLoss(name + ": checksum mismatch");
  return std::string(body);
}

std::string Manifest::Encode() const {
  json gaps_json = json::array();
  for (const Gap& g : gaps) {
    gaps_json.push_back({{"missing_from", g.missing_from}, {"resume_at", g.resume_at},
                         {"consistent_from", g.consistent_from}});
  }
  json pins_json = json::array();
  for (const Pin& p : pins) pins_json.push_back({{"seq", p.seq}, {"owner", p.owner}, {"reason", p.reason}});
  json j = {{"format", 1},
            {"volume_id", IdToHex(volume_id)},
            {"history_id", HistoryIdToHex(history_id)},
            {"size", size},
            {"block_size", block_size},
            {"created_ns", created_ns},
            {"base_seq", base_seq},
            {"merge_target", merge_target},
            {"any_point_from", any_point_from},
            {"pins", pins_json},
            {"state", state},
            {"committed_overlay", committed_overlay},
            {"role", role},
            {"initial_sync", initial_sync},
            {"sync_offset", sync_offset},
            {"seeded", seeded},
            {"consistent_from", consistent_from},
            {"gaps", gaps_json}};
  return FrameWithChecksum(j.dump());
}

Result<Manifest> Manifest::Decode(std::string_view text) {
  ASSIGN_OR_RETURN(std::string body, UnframeChecksum(text, "MANIFEST"));
  Manifest m;
  try {
    json j = json::parse(body);
    if (j.at("format").get<int>() != 1) {
      return DataLoss("MANIFEST: format " + j.at("format").dump() +
                      " is not supported (this build reads format 1)");
    }
    if (!IdFromHex(j.at("volume_id").get<std::string>(), &m.volume_id)) {
      return DataLoss("MANIFEST: bad volume_id");
    }
    if (!HistoryIdFromHex(j.at("history_id").get<std::string>(), &m.history_id)) {
      return DataLoss("MANIFEST: bad history_id");
    }
    m.size = j.at("size").get<uint64_t>();
    m.block_size = j.at("block_size").get<uint32_t>();
    m.created_ns = j.at("created_ns").get<int64_t>();
    m.base_seq = j.at("base_seq").get<uint64_t>();
    m.merge_target = j.at("merge_target").get<uint64_t>();
    m.any_point_from = j.at("any_point_from").get<uint64_t>();
    for (const json& p : j.at("pins")) {
      m.pins.push_back({p.at("seq").get<uint64_t>(), p.at("owner").get<std::string>(),
                        p.at("reason").get<std::string>()});
    }
    m.state = j.at("state").get<std::string>();
    m.committed_overlay = j.at("committed_overlay").get<std::string>();
    // Added within format 1 (replication); absent in manifests written before.
    m.role = j.value("role", std::string("replica"));
    m.initial_sync = j.value("initial_sync", false);
    m.sync_offset = j.value("sync_offset", uint64_t{0});
    m.seeded = j.value("seeded", false);
    m.consistent_from = j.value("consistent_from", uint64_t{0});
    if (j.contains("gaps")) {
      for (const json& g : j.at("gaps")) {
        m.gaps.push_back({g.at("missing_from").get<uint64_t>(), g.at("resume_at").get<uint64_t>(),
                          g.at("consistent_from").get<uint64_t>()});
      }
    }
  } catch (const std::exception& e) {
    return DataLoss(std::string("MANIFEST: ") + e.what());
  }
  if (m.block_size < 512 || m.block_size > 65536 || (m.block_size & (m.block_size - 1)) ||
      m.size % m.block_size) {
    return DataLoss("MANIFEST: inconsistent size/block_size");
  }
  if (m.role != "replica" && m.role != "pending-log") {
    return DataLoss("MANIFEST: unknown role " + m.role);
  }
  if (m.state != "replica" && m.state != "committed") {
    return DataLoss("MANIFEST: unknown state " + m.state);
  }
  return m;
}

Result<Manifest> Manifest::Load(Env* env, const std::string& dir) {
  std::string path = JoinPath(dir, "MANIFEST");
  if (!env->Exists(path)) {
    return NotFound(dir + " holds no replica (no MANIFEST); create one first");
  }
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(env, path));
  return Decode(text);
}

Status Manifest::Store(Env* env, const std::string& dir) const {
  return WriteFileAtomically(env, JoinPath(dir, "MANIFEST"), Encode());
}

}  // namespace ferry::journal
