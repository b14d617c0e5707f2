// `ferry replica ...`: offline tools that work on a replica directory with nothing else
// running — inspect it, verify every checksum, list and export recovery points.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "journal/replica.h"
#include "journal/view.h"

namespace ferry::cli {

using journal::MarkerKind;
using journal::PointFilter;
using journal::PointSpec;
using journal::Record;
using journal::Replica;
using nlohmann::json;

void Check(const Status& s, const std::string& what) {
  if (s.ok()) return;
  std::fprintf(stderr, "ferry: %s%s%s\n", what.c_str(), what.empty() ? "" : ": ",
               s.ToString().c_str());
  throw Exit{1};
}

namespace {

std::shared_ptr<Replica> OpenOrDie(const std::string& dir) {
  auto r = Replica::Open(dir);
  Check(r.status(), "cannot open replica " + dir);
  return *r;
}

std::shared_ptr<Replica> OpenReplicaOrDie(const std::string& dir) {
  auto r = OpenOrDie(dir);
  if (r->committed()) {
    Check(FailedPrecondition("replica " + dir + " was committed; it is a plain disk now (" +
                             dir + "/overlays/*/data.img) and has no recovery points"));
  }
  return r;
}

json PointJson(const journal::PointInfo& p) {
  json j = {{"seq", p.seq}, {"time", FormatTime(p.timestamp_ns)}, {"is_marker", p.is_marker}};
  if (p.is_marker) {
    j["kind"] = std::string(journal::MarkerKindName(p.marker.kind));
    j["label"] = p.marker.label;
    j["marker_id"] = journal::IdToHex(p.marker.marker_id);
    if (p.marker.kind == MarkerKind::kGroupConsistent) j["group_id"] = journal::IdToHex(p.marker.group_id);
  }
  return j;
}

struct Common {
  std::string dir;
  std::string output = "table";
};

void AddOutputOption(CLI::App* cmd, Common* c) {
  cmd->add_option("--output,-o", c->output, "Output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
}

// "2h:1h,7d:4h": markers older than 2 hours are thinned to one per hour, older than 7 days to
// one per 4 hours (journal::RetentionPolicy::tiers).
Status ParseTiers(const std::string& text, std::vector<journal::RetentionPolicy::Tier>* out) {
  const std::string want = "; give AGE:BUCKET pairs ascending by AGE, e.g. 2h:1h,7d:4h";
  std::vector<journal::RetentionPolicy::Tier> tiers;
  for (size_t pos = 0; pos <= text.size();) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string pair = text.substr(pos, comma - pos);
    const size_t colon = pair.find(':');
    journal::RetentionPolicy::Tier t{};
    if (colon == std::string::npos || !ParseDuration(pair.substr(0, colon), &t.older_than_ns) ||
        !ParseDuration(pair.substr(colon + 1), &t.bucket_ns) || t.bucket_ns <= 0) {
      return InvalidArgument("--tiers '" + text + "': '" + pair + "' is not AGE:BUCKET with a bucket above 0" + want);
    }
    if (!tiers.empty() && t.older_than_ns <= tiers.back().older_than_ns) {
      return InvalidArgument("--tiers '" + text + "': the ages do not ascend" + want);
    }
    tiers.push_back(t);
    pos = comma + 1;
  }
  *out = std::move(tiers);
  return Status::Ok();
}

}  // namespace

void AddReplicaCommands(CLI::App& app) {
  auto* replica = app.add_subcommand("replica", "Offline tools for a replica directory");
  replica->require_subcommand(1);
  AddServeCommand(*replica);

  // create
  {
    auto* cmd = replica->add_subcommand("create", "Create an empty replica of a volume");
    auto dir = std::make_shared<std::string>();
    auto size = std::make_shared<std::string>();
    auto bs = std::make_shared<uint32_t>(4096);
    cmd->add_option("DIR", *dir, "Replica directory")->required();
    cmd->add_option("--size", *size, "Volume size, e.g. 10G")->required();
    cmd->add_option("--block-size", *bs, "Block size in bytes")->capture_default_str();
    cmd->callback([=] {
      journal::CreateParams p;
      if (!ParseBytes(*size, &p.size)) Check(InvalidArgument("--size '" + *size + "' is not a size like 10G"));
      p.block_size = *bs;
      auto r = Replica::Create(*dir, p);
      Check(r.status(), "cannot create replica");
      std::printf("created replica %s: volume %s, %s, block size %u\n", dir->c_str(),
                  journal::IdToHex((*r)->volume_id()).c_str(), HumanBytes(p.size).c_str(), p.block_size);
    });
  }

  // write: append a write record from a file (for tests and demonstrations)
  {
    auto* cmd = replica->add_subcommand("write", "Append the contents of a file as a write at an offset");
    auto dir = std::make_shared<std::string>();
    auto file = std::make_shared<std::string>();
    auto offset = std::make_shared<uint64_t>(0);
    cmd->add_option("DIR", *dir, "Replica directory")->required();
    cmd->add_option("--offset", *offset, "Byte offset in the volume")->required();
    cmd->add_option("--file", *file, "File whose bytes to write")->required()->check(CLI::ExistingFile);
    cmd->callback([=] {
      auto r = OpenReplicaOrDie(*dir);
      std::ifstream in(*file, std::ios::binary);
      std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      auto seq = r->Append(Record::Write(*offset, std::move(data)));
      Check(seq.status(), "write refused");
      std::printf("seq %llu\n", static_cast<unsigned long long>(*seq));
    });
  }

  // marker
  {
    auto* cmd = replica->add_subcommand("marker", "Append a recovery point marker");
    auto dir = std::make_shared<std::string>();
    auto kind = std::make_shared<std::string>("crash-consistent");
    auto label = std::make_shared<std::string>();
    cmd->add_option("DIR", *dir, "Replica directory")->required();
    cmd->add_option("--kind", *kind, "crash-consistent | app-consistent | group-consistent")->capture_default_str();
    cmd->add_option("--label", *label, "Label for operators");
    cmd->callback([=] {
      MarkerKind k;
      if (!journal::ParseMarkerKind(*kind, &k)) {
        Check(InvalidArgument("--kind '" + *kind + "': use crash-consistent, app-consistent or group-consistent"));
      }
      auto r = OpenReplicaOrDie(*dir);
      auto seq = r->Append(Record::Marker(k, *label));
      Check(seq.status(), "marker refused");
      std::printf("seq %llu\n", static_cast<unsigned long long>(*seq));
    });
  }

  // inspect
  {
    auto* cmd = replica->add_subcommand("inspect", "Show a replica's identity, history and health");
    auto c = std::make_shared<Common>();
    cmd->add_option("DIR", c->dir, "Replica directory")->required();
    AddOutputOption(cmd, c.get());
    cmd->callback([=] {
      auto r = OpenOrDie(c->dir);
      auto st = r->Stats();
      auto health = r->GetHealth();
      json j = {{"dir", c->dir},
                {"volume_id", journal::IdToHex(r->volume_id())},
                {"size", r->size()},
                {"block_size", r->block_size()},
                {"state", r->committed() ? "committed" : "replica"},
                {"oldest_point", st.oldest_point},
                {"any_point_from", st.any_point_from},
                {"latest_point", st.last_seq},
                {"records", st.records},
                {"markers", st.markers},
                {"segments", st.segments},
                {"journal_bytes", st.journal_bytes},
                {"index_bytes", st.index_bytes},
                {"health", std::string(journal::HealthLevelName(health.level))},
                {"problems", health.problems},
                {"overlays", r->ListOverlays()}};
      json pins = json::array();
      for (const auto& p : r->Pins()) pins.push_back({{"seq", p.seq}, {"owner", p.owner}, {"reason", p.reason}});
      j["pins"] = pins;
      if (st.records) {
        j["oldest_time"] = FormatTime(st.oldest_point_ns);
        j["latest_time"] = FormatTime(st.last_ns);
      }
      if (c->output == "json") {
        std::printf("%s\n", j.dump(2).c_str());
        return;
      }
      std::vector<std::vector<std::string>> rows = {
          {"volume", journal::IdToHex(r->volume_id())},
          {"size", HumanBytes(r->size()) + " (block size " + std::to_string(r->block_size()) + ")"},
          {"state", j["state"]},
          {"points", "seq " + std::to_string(st.oldest_point) + " .. " + std::to_string(st.last_seq) +
                         (st.records ? " (" + FormatTime(st.oldest_point_ns) + " .. " + FormatTime(st.last_ns) + ")" : "")},
          {"any point from", "seq " + std::to_string(st.any_point_from)},
          {"records", std::to_string(st.records) + " (" + std::to_string(st.markers) + " markers)"},
          {"journal", HumanBytes(st.journal_bytes) + " in " + std::to_string(st.segments) + " segments"},
          {"index memory", HumanBytes(st.index_bytes)},
          {"health", j["health"]}};
      for (const auto& p : health.problems) rows.push_back({"  problem", p});
      for (const auto& p : r->Pins()) rows.push_back({"pin", "seq " + std::to_string(p.seq) + " by " + p.owner});
      for (const auto& o : r->ListOverlays()) rows.push_back({"overlay", o});
      PrintTable({"FIELD", "VALUE"}, rows);
    });
  }

  // verify
  {
    auto* cmd = replica->add_subcommand("verify", "Check every record's checksums");
    auto dir = std::make_shared<std::string>();
    cmd->add_option("DIR", *dir, "Replica directory")->required();
    cmd->callback([=] {
      auto r = OpenOrDie(*dir);
      auto problems = r->Verify();
      Check(problems.status(), "verify failed");
      auto st = r->Stats();
      if (problems->empty()) {
        std::printf("ok: %llu records in %llu segments verified\n",
                    static_cast<unsigned long long>(st.records), static_cast<unsigned long long>(st.segments));
        return;
      }
      for (const auto& p : *problems) std::printf("%s\n", p.c_str());
      throw Exit{2};
    });
  }

  // points
  {
    auto* cmd = replica->add_subcommand("points", "List recovery points (markers), newest first");
    auto c = std::make_shared<Common>();
    auto kind = std::make_shared<std::string>();
    auto from = std::make_shared<std::string>();
    auto to = std::make_shared<std::string>();
    auto limit = std::make_shared<size_t>(50);
    auto token = std::make_shared<uint64_t>(0);
    cmd->add_option("DIR", c->dir, "Replica directory")->required();
    cmd->add_option("--kind", *kind, "Only this kind: crash-consistent | app-consistent | group-consistent");
    cmd->add_option("--from", *from, "Only points at or after this UTC time");
    cmd->add_option("--to", *to, "Only points at or before this UTC time");
    cmd->add_option("--limit", *limit, "Points per page")->capture_default_str();
    cmd->add_option("--page-token", *token, "Continue a listing (from the previous page)");
    AddOutputOption(cmd, c.get());
    cmd->callback([=] {
      PointFilter f;
      f.limit = *limit;
      f.before_seq = *token;
      if (!kind->empty()) {
        MarkerKind k;
        if (!journal::ParseMarkerKind(*kind, &k)) Check(InvalidArgument("--kind '" + *kind + "' is not a marker kind"));
        f.kind = k;
      }
      if (!from->empty() && !ParseTime(*from, &f.from_ns)) Check(InvalidArgument("--from '" + *from + "' is not a UTC time like 2026-11-26T05:06:18Z"));
      if (!to->empty() && !ParseTime(*to, &f.to_ns)) Check(InvalidArgument("--to '" + *to + "' is not a UTC time like 2026-11-26T05:06:18Z"));
      auto r = OpenReplicaOrDie(c->dir);
      auto page = r->ListPoints(f);
      Check(page.status(), "cannot list points");
      if (c->output == "json") {
        json j = {{"points", json::array()}, {"next_page_token", page->next_token}};
        for (const auto& p : page->points) j["points"].push_back(PointJson(p));
        std::printf("%s\n", j.dump(2).c_str());
        return;
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& p : page->points) {
        rows.push_back({std::to_string(p.seq), FormatTime(p.timestamp_ns),
                        std::string(journal::MarkerKindName(p.marker.kind)), p.marker.label});
      }
      PrintTable({"SEQ", "TIME", "KIND", "LABEL"}, rows);
      auto st = r->Stats();
      std::printf("any seq from %llu to %llu is also a point (custom point in time)\n",
                  static_cast<unsigned long long>(std::max(st.any_point_from, st.oldest_point)),
                  static_cast<unsigned long long>(st.last_seq));
      if (page->next_token) std::printf("more: --page-token %llu\n", static_cast<unsigned long long>(page->next_token));
    });
  }

  // export
  {
    auto* cmd = replica->add_subcommand("export", "Write a recovery point out as a raw disk image");
    auto dir = std::make_shared<std::string>();
    auto point = std::make_shared<std::string>("latest");
    auto out = std::make_shared<std::string>();
    cmd->add_option("DIR", *dir, "Replica directory")->required();
    cmd->add_option("--point", *point, "latest | latest-app-consistent | SEQ | TIME | marker:ID")->capture_default_str();
    cmd->add_option("--output", *out, "Image file to write (must not exist)")->required();
    cmd->callback([=] {
      auto spec = PointSpec::Parse(*point);
      Check(spec.status(), "--point");
      auto r = OpenReplicaOrDie(*dir);
      auto info = r->ResolvePoint(*spec);
      Check(info.status(), "cannot use point " + *point);
      auto view = r->OpenView(info->seq);
      Check(view.status(), "cannot open point");
      Env* env = Env::Posix();
      auto f = env->OpenFile(*out, OpenMode::kCreateNew);
      Check(f.status(), "cannot create " + *out);
      Check((*f)->Truncate(r->size()));
      std::string buf(4 << 20, '\0');
      const std::string zeros(buf.size(), '\0');
      uint64_t written = 0;
      for (uint64_t off = 0; off < r->size(); off += buf.size()) {
        size_t n = std::min<uint64_t>(buf.size(), r->size() - off);
        Check((*view)->Read(off, n, buf.data()), "read failed");
        if (std::memcmp(buf.data(), zeros.data(), n) == 0) continue;  // keep the image sparse
        Check((*f)->WriteAt(off, std::string_view(buf.data(), n)), "write failed");
        written += n;
      }
      Check((*f)->Sync());
      std::printf("exported point seq %llu (%s) to %s: %s, %s of data\n",
                  static_cast<unsigned long long>(info->seq), FormatTime(info->timestamp_ns).c_str(),
                  out->c_str(), HumanBytes(r->size()).c_str(), HumanBytes(written).c_str());
    });
  }

  // retain
  {
    auto* cmd = replica->add_subcommand("retain", "Apply retention: merge old history, thin old markers");
    auto dir = std::make_shared<std::string>();
    auto window = std::make_shared<std::string>("15d");
    auto any = std::make_shared<std::string>("2h");
    auto tiers = std::make_shared<std::string>("2h:1h,7d:4h");
    cmd->add_option("DIR", *dir, "Replica directory")->required();
    cmd->add_option("--window", *window, "Keep history this long")->capture_default_str();
    cmd->add_option("--any-point", *any, "Keep every point (not only markers) this long")->capture_default_str();
    cmd->add_option("--tiers", *tiers,
                    "Thin markers older than AGE to one per BUCKET: AGE:BUCKET pairs, ascending by AGE")
        ->capture_default_str();
    cmd->callback([=] {
      journal::RetentionPolicy p;
      if (!ParseDuration(*window, &p.window_ns)) Check(InvalidArgument("--window '" + *window + "' is not a duration like 15d"));
      if (!ParseDuration(*any, &p.any_point_ns)) Check(InvalidArgument("--any-point '" + *any + "' is not a duration like 2h"));
      Check(ParseTiers(*tiers, &p.tiers));
      auto r = OpenReplicaOrDie(*dir);
      auto rep = r->ApplyRetention(p);
      Check(rep.status(), "retention failed");
      std::printf("merged to seq %llu (%llu records), any point from seq %llu, %llu markers thinned, "
                  "%llu records compacted, %s reclaimed%s\n",
                  static_cast<unsigned long long>(rep->merged_to_seq),
                  static_cast<unsigned long long>(rep->records_merged),
                  static_cast<unsigned long long>(rep->any_point_from),
                  static_cast<unsigned long long>(rep->markers_thinned),
                  static_cast<unsigned long long>(rep->records_compacted),
                  HumanBytes(rep->bytes_reclaimed).c_str(),
                  rep->held_by_pins ? (", held at seq " + std::to_string(rep->held_by_pins) + " by a pin").c_str() : "");
    });
  }
}

}  // namespace ferry::cli
