// `ferry demo`: the replica engine's own demonstration, run by the README's first command.
// It protects a simulated disk into a real replica directory and walks the recovery cycle
// the engine supports today, checking every result against what was written:
// journal with markers -> points -> views at any point -> test failover (overlay, discard)
// -> failover (overlay) with writes -> commit while in use -> plain disk image.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "base/clock.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "journal/overlay.h"
#include "journal/replica.h"
#include "journal/view.h"
#include "node/node.h"

#include <spdlog/spdlog.h>

namespace ferry::cli {
namespace {

using journal::MarkerKind;
using journal::PointSpec;
using journal::Record;
using journal::Replica;

constexpr uint32_t kBlock = 4096;
constexpr uint64_t kLogBlocks = 1024;  // the application's log area: 4 MiB

// Record i of the simulated application goes to block i % kLogBlocks.
std::string RecordBlock(uint64_t i) {
  std::string b(kBlock, static_cast<char>('a' + i % 26));
  char head[32];
  int n = snprintf(head, sizeof head, "REC %010llu\n", static_cast<unsigned long long>(i));
  std::memcpy(b.data(), head, static_cast<size_t>(n));
  return b;
}

// The log area as it must look after records [0, count).
std::string ExpectedLog(uint64_t count) {
  std::string out(kLogBlocks * kBlock, '\0');
  for (uint64_t b = 0; b < kLogBlocks && b < count; ++b) {
    uint64_t last = b + ((count - 1 - b) / kLogBlocks) * kLogBlocks;
    std::string blk = RecordBlock(last);
    std::memcpy(out.data() + b * kBlock, blk.data(), kBlock);
  }
  return out;
}

double Ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

int checks_passed = 0;
void Expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "ferry demo: CHECK FAILED: %s\n", what.c_str());
    throw Exit{1};
  }
  ++checks_passed;
  std::printf("    ok  %s\n", what.c_str());
}

// Waits up to 60 s for cond, polling every 20 ms.
template <typename F>
bool WaitFor(F cond) {
  for (int i = 0; i < 3000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

// Two node daemons in this process, one per site, replicating a disk over a link on
// loopback: initial sync of what the disk held, continuous replication of new writes,
// recovery points at the target, a test failover there.
void RunReplicationDemo(const std::filesystem::path& root, uint64_t records) {
  std::printf("\n7. replication between two sites: a node at each, a link between them\n");
  // The nodes' operator log lines would bury the demo's own output.
  const auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::warn);
  std::filesystem::create_directories(root);
  auto config = [&](const std::string& name, const std::string& site) {
    node::NodeConfig c;
    c.name = name;
    c.site = site;
    c.data_dir = (root / name).string();
    c.link_listen = "127.0.0.1:0";
    c.insecure = true;  // loopback only; real sites set [tls] cert, key and ca
    return c;
  };
  auto primary = node::Node::Start(config("node-primary", "primary"));
  Check(primary.status(), "start the primary node");
  auto recovery = node::Node::Start(config("node-recovery", "recovery"));
  Check(recovery.status(), "start the recovery node");
  node::Node& a = **primary;
  node::Node& b = **recovery;
  // The machine's disk already holds the application's log before protection.
  const std::string disk = (root / "app-disk.img").string();
  {
    auto f = Env::Posix()->OpenFile(disk, OpenMode::kCreate);
    Check(f.status(), "create the disk");
    Check((*f)->Truncate(64ull << 20), "size the disk");
    std::string log = ExpectedLog(records / 2);
    Check((*f)->WriteAt(0, log), "write the disk");
  }
  Check(a.AddVolume("app-disk", disk, 0).status(), "add the volume");
  node::ProtectParams p;
  p.target = b.link_address().substr(6);  // "tcp://HOST:PORT"
  p.marker_interval_ms = 1000;
  auto t0 = std::chrono::steady_clock::now();
  Check(a.Protect("app-disk", p).status(), "protect the volume");
  auto replica_synced = [&] {
    auto st = b.StatusJson();
    for (const auto& r : st["replicas"]) {
      if (r["name"] == "app-disk" && !r["initial_sync"]["running"].get<bool>()) return true;
    }
    return false;
  };
  Expect(WaitFor(replica_synced), "initial sync of the disk's existing data finished");
  std::printf("   initial sync (only allocated, non-zero data) done in %.0f ms\n",
              Ms(std::chrono::steady_clock::now() - t0));

  // The machine keeps writing through the node's splitter (its NBD export).
  auto exp = a.Export("app-disk");
  Check(exp.status(), "open the volume's export");
  for (uint64_t i = records / 2; i < records; ++i) {
    Check((*exp)->Write((i % kLogBlocks) * kBlock, RecordBlock(i), false), "write through the splitter");
  }
  auto m = a.Mark("app-disk", "app-consistent", "demo");
  Check(m.status(), "marker");
  const uint64_t seq = (*m)["seq"].get<uint64_t>();
  Expect(WaitFor([&] { return a.StatusJson()["volumes"][0]["link"]["acked_seq"].get<uint64_t>() >= seq; }),
         "the recovery site holds every write up to the marker durably");
  auto link = a.StatusJson()["volumes"][0]["link"];
  std::printf("   %llu records replicated; %s on the wire (compressed %.1fx); RPO %.1f s\n",
              static_cast<unsigned long long>(records - records / 2),
              HumanBytes(link["wire_bytes"].get<uint64_t>()).c_str(),
              link["raw_bytes"].get<double>() / std::max(1.0, link["wire_bytes"].get<double>()),
              link["rpo_seconds"].is_null() ? 0.0 : link["rpo_seconds"].get<double>());

  // At the recovery site: the point is a disk, and a test failover runs there.
  auto view = b.Export("app-disk@" + std::to_string(seq));
  Check(view.status(), "open the recovery point");
  std::string got(kLogBlocks * kBlock, '\0');
  Check((*view)->Read(0, got.size(), got.data()), "read the recovery point");
  Expect(got == ExpectedLog(records), "recovery point at the recovery site = what the machine wrote");
  Check(b.CreateOverlay("app-disk", "drill", std::to_string(seq)).status(), "test failover");
  auto drill = b.Export("app-disk/overlay/drill");
  Check(drill.status(), "open the drill's disk");
  Check((*drill)->Write(0, RecordBlock(records + 1), false), "write in the drill");
  Check(b.DiscardOverlay("app-disk", "drill"), "clean up the drill");
  std::string again(kBlock, '\0');
  Check((*view)->Read(0, kBlock, again.data()), "read the point again");
  Expect(again == got.substr(0, kBlock), "test failover left the replica untouched");
  std::printf("   recovery point seq %llu served at the recovery site; test failover done and cleaned up\n",
              static_cast<unsigned long long>(seq));
  view->reset();
  drill->reset();
  exp->reset();
  a.Stop();
  b.Stop();
  spdlog::set_level(level);
}

void RunDemo(const std::string& dir_arg, bool keep, uint64_t records) {
  namespace fs = std::filesystem;
  std::string dir = dir_arg;
  if (dir.empty()) {
    char tmpl[] = "/tmp/ferry-demo-XXXXXX";
    if (!mkdtemp(tmpl)) Check(IoError("cannot make a temporary directory"));
    dir = std::string(tmpl) + "/replica";
  } else if (fs::exists(dir)) {
    Check(AlreadyExists(dir + " exists; pass a new directory or remove it"));
  }
  std::printf("Ferry replica engine demonstration\n");
  std::printf("replica directory: %s\n\n", dir.c_str());

  // 1. A replica of a 1 GiB volume.
  journal::CreateParams params;
  params.size = 1ull << 30;
  auto created = Replica::Create(dir, params);
  Check(created.status(), "create replica");
  std::shared_ptr<Replica> r = *created;
  std::printf("1. created a replica of a %s volume (base image + journal + index)\n",
              HumanBytes(params.size).c_str());

  // 2. The protected disk writes; markers every 100 records, app-consistent every 500.
  std::printf("2. the protected disk writes %llu records of 4 KiB, with a crash-consistent marker "
              "every 100 and an app-consistent one every 500\n",
              static_cast<unsigned long long>(records));
  std::vector<uint64_t> seq_after;  // seq_after[i] = seq of record i
  std::vector<std::pair<uint64_t, uint64_t>> app_points;  // (seq, records so far)
  auto t0 = std::chrono::steady_clock::now();
  std::vector<Record> batch;
  for (uint64_t i = 0; i < records; ++i) {
    batch.push_back(Record::Write((i % kLogBlocks) * kBlock, RecordBlock(i)));
    if ((i + 1) % 100 == 0) {
      bool app = (i + 1) % 500 == 0;
      batch.push_back(Record::Marker(app ? MarkerKind::kAppConsistent : MarkerKind::kCrashConsistent,
                                     app ? "db-checkpoint-" + std::to_string((i + 1) / 500) : ""));
      auto last = r->Append(batch);
      Check(last.status(), "append");
      uint64_t first_seq = *last - batch.size() + 1;
      for (size_t k = 0; k + 1 < batch.size(); ++k) seq_after.push_back(first_seq + k);
      if (app) app_points.push_back({*last, i + 1});
      batch.clear();
    }
  }
  if (!batch.empty()) {
    auto last = r->Append(batch);
    Check(last.status(), "append");
    for (size_t k = 0; k < batch.size(); ++k) seq_after.push_back(*last - batch.size() + 1 + k);
  }
  auto t1 = std::chrono::steady_clock::now();
  auto st = r->Stats();
  std::printf("   %llu records durable in %.0f ms (%llu syncs); journal %s\n",
              static_cast<unsigned long long>(st.records), Ms(t1 - t0),
              static_cast<unsigned long long>(st.syncs), HumanBytes(st.journal_bytes).c_str());

  // 3. Recovery points.
  journal::PointFilter filter;
  filter.limit = 3;
  filter.kind = MarkerKind::kAppConsistent;
  auto page = r->ListPoints(filter);
  Check(page.status(), "list points");
  std::printf("3. newest app-consistent recovery points:\n");
  for (const auto& p : page->points) {
    std::printf("     seq %-8llu %s  %s\n", static_cast<unsigned long long>(p.seq),
                FormatTime(p.timestamp_ns).c_str(), p.marker.label.c_str());
  }

  // 4. Views at points: each shows exactly the records written before it.
  std::printf("4. views at recovery points (read-only virtual disks, nothing copied)\n");
  std::string got(kLogBlocks * kBlock, '\0');
  for (auto [seq, count] : app_points) {
    auto tv = std::chrono::steady_clock::now();
    auto view = r->OpenView(seq);
    auto tv2 = std::chrono::steady_clock::now();
    Check(view.status(), "open view");
    Check((*view)->Read(0, got.size(), got.data()), "read view");
    Expect(got == ExpectedLog(count), "view at app-consistent seq " + std::to_string(seq) +
                                          " holds records 0.." + std::to_string(count - 1) +
                                          " (opened in " + std::to_string(Ms(tv2 - tv)).substr(0, 5) + " ms)");
  }
  // A custom point between markers: any write is a point in time.
  uint64_t mid = records * 3 / 7;
  {
    auto view = r->OpenView(seq_after[mid]);
    Check(view.status(), "open view");
    Check((*view)->Read(0, got.size(), got.data()), "read view");
    Expect(got == ExpectedLog(mid + 1), "custom point seq " + std::to_string(seq_after[mid]) +
                                            " (no marker) holds records 0.." + std::to_string(mid));
  }

  // 5. Test failover: a writable overlay over the latest app-consistent point, then discard.
  auto point = r->ResolvePoint(*PointSpec::Parse("latest-app-consistent"));
  Check(point.status(), "resolve latest-app-consistent");
  std::printf("5. test failover at latest-app-consistent (seq %llu)\n",
              static_cast<unsigned long long>(point->seq));
  {
    auto tfo = r->CreateOverlay("test-failover", point->seq);
    Check(tfo.status(), "create overlay");
    Check((*tfo)->Write(0, "written during the drill"), "overlay write");
    Check((*tfo)->Flush(), "overlay flush");
    auto latest = r->OpenView(r->Stats().last_seq);
    Check(latest.status(), "open view");
    Check((*latest)->Read(0, got.size(), got.data()), "read view");
    Expect(got == ExpectedLog(records), "replica unchanged by the drill's writes");
    Check(r->DiscardOverlay("test-failover"), "discard");
    Expect(r->ListOverlays().empty(), "drill cleaned up: overlay discarded, point unpinned");
  }

  // 6. Failover to latest; the recovered machine writes while the commit consolidates.
  auto latest = r->ResolvePoint(PointSpec{});
  Check(latest.status(), "resolve latest");
  std::printf("6. failover to latest (seq %llu); the recovered machine keeps writing\n",
              static_cast<unsigned long long>(latest->seq));
  auto tf = std::chrono::steady_clock::now();
  auto fo = r->CreateOverlay("failover", latest->seq);
  Check(fo.status(), "create overlay");
  auto tf2 = std::chrono::steady_clock::now();
  std::printf("   failed-over disk ready in %.2f ms\n", Ms(tf2 - tf));
  Check(r->StartCommit("failover"), "start commit");
  std::string extra = RecordBlock(records);
  Check((*fo)->Write(0, extra), "write after failover");
  Check(r->WaitForCommit(), "commit");
  Check((*fo)->Flush(), "flush");
  std::string expect = ExpectedLog(records);
  std::memcpy(expect.data(), extra.data(), kBlock);
  Check((*fo)->Read(0, got.size(), got.data()), "read failed-over disk");
  Expect(got == expect, "failed-over disk = latest point + the recovered machine's write");
  Expect(r->committed(), "commit finished: other recovery points dropped, journal removed");
  Expect((*fo)->ChangedExtents().size() == 1, "overlay knows exactly which blocks changed since failover (1 extent)");
  std::printf("   the disk is now a plain image: %s%s\n", (*fo)->data_path().c_str(),
              !keep && dir_arg.empty() ? " (removed with the demo's directory; --keep keeps it)" : "");

  RunReplicationDemo(fs::path(dir).parent_path() / "sites", records);

  std::printf("\nall %d checks passed\n", checks_passed);
  if (!keep && dir_arg.empty()) {
    fo->reset();
    r.reset();
    std::error_code ec;
    fs::remove_all(fs::path(dir).parent_path(), ec);
  } else {
    std::printf("replica kept in %s (inspect it: ferry replica inspect %s)\n", dir.c_str(), dir.c_str());
  }
}

}  // namespace

void AddDemoCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo-engine", "Demonstrate the replica engine alone, checking each step");
  auto dir = std::make_shared<std::string>();
  auto keep = std::make_shared<bool>(false);
  auto records = std::make_shared<uint64_t>(5000);
  cmd->add_option("--dir", *dir, "Replica directory to create (default: a temporary one)");
  cmd->add_flag("--keep", *keep, "Keep the temporary replica afterwards");
  cmd->add_option("--records", *records, "Records the simulated disk writes")->capture_default_str()->check(CLI::Range(1000, 10'000'000));
  cmd->callback([=] { RunDemo(*dir, *keep, *records); });
}

}  // namespace ferry::cli
