// The control plane's API under a large inventory: 10,000 replicated items and 1,000,000
// recovery points in the SQLite store, then pages of items and of recovery points read
// through the real REST server over loopback HTTP. Prints p50/p99 per request and the ratio
// to the target (listing a page of items: p99 <= 100 ms).
//
//   build-bench/api_list_bench [items] [points_per_item] [requests]
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <vector>

#include "api/server.h"
#include "control/controller.h"
#include "store/database.h"

using namespace ferry;

namespace {

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t items = argc > 1 ? std::atoll(argv[1]) : 10'000;
  const int64_t points = argc > 2 ? std::atoll(argv[2]) : 100;
  const int requests = argc > 3 ? std::atoi(argv[3]) : 500;
  char tmpl[] = "/tmp/ferry-api-bench-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  auto db = store::OpenSqlite(dir + "/ferry.db");
  Check(db.status(), "open");
  auto ctl = control::Controller::Open(std::move(*db), SystemClock::Default());
  Check(ctl.status(), "controller");
  auto& c = **ctl;

  auto t0 = std::chrono::steady_clock::now();
  std::string now = FormatTime(SystemClock::Default()->NowNanos());
  Check(c.db().Transaction([&](store::Sql& tx) -> Status {
    RETURN_IF_ERROR(tx.Exec("INSERT INTO sites (id, name, created_at) VALUES (1, 'primary', $1), (2, 'recovery', $1)",
                            {now}).status());
    RETURN_IF_ERROR(tx.Exec("INSERT INTO nodes (id, name, site_id, api_url, api_token, link_address, nbd, secret, "
                            "registered_at) VALUES (1, 'node-a', 1, 'http://127.0.0.1:1', '', '127.0.0.1:2', '[]', 's', $1), "
                            "(2, 'node-b', 2, 'http://127.0.0.1:3', '', '127.0.0.1:4', '[]', 's', $1)",
                            {now}).status());
    for (int64_t i = 1; i <= items; ++i) {
      std::string name = "vm" + std::to_string(i);
      std::string disks = R"([{"name":"disk0","volume":")" + name + R"(.disk0","size":10737418240,"path":"/srv/)" + name +
                          R"(.img"}])";
      RETURN_IF_ERROR(tx.Exec("INSERT INTO machines (id, name, site_id, node_id, disks, created_at) VALUES ($1, $2, 1, 1, $3, $4)",
                              {i, name, disks, now}).status());
      RETURN_IF_ERROR(tx.Exec("INSERT INTO items (id, name, machine_id, state, direction, active_site_id, source_site_id, "
                              "target_site_id, source_node_id, target_node_id, policy_id, health, problems, rpo_seconds, "
                              "properties, disks, live, created_at, updated_at) VALUES ($1, $2, $1, 'Protected', 'forward', "
                              "1, 1, 2, 1, 2, 1, 'Healthy', '[]', 3.5, '{\"target_name\":\"x\",\"cpus\":1,\"memory_mib\":512,"
                              "\"network\":\"default\",\"ip_address\":\"\"}', $3, '{}', $4, $4)",
                              {i, name, disks, now}).status());
      for (int64_t p = 1; p <= points; ++p) {
        RETURN_IF_ERROR(tx.Exec("INSERT INTO recovery_points (item_id, seq, time_ns, kind, label) VALUES ($1, $2, $3, "
                                "'crash-consistent', '')",
                                {i, p * 10, p * 1'000'000'000LL}).status());
      }
    }
    return Status::Ok();
  }), "fill");
  double fill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  api::ApiServer server(&c, "bench-token");
  Check(server.Listen("127.0.0.1:0"), "listen");
  httplib::Client cli("127.0.0.1", server.port());
  httplib::Headers h{{"Authorization", "Bearer bench-token"}};
  std::mt19937_64 rng(42);
  auto measure = [&](auto path_of) {
    std::vector<double> ms;
    for (int r = 0; r < requests; ++r) {
      std::string path = path_of();
      auto a = std::chrono::steady_clock::now();
      auto res = cli.Get(path, h);
      if (!res || res->status != 200) {
        std::fprintf(stderr, "GET %s failed\n", path.c_str());
        std::exit(1);
      }
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
    }
    return ms;
  };
  auto items_ms = measure([&] {
    int64_t after = static_cast<int64_t>(rng() % static_cast<uint64_t>(items));
    return "/api/v1/items?limit=50&page_token=" + std::to_string(after);
  });
  auto points_ms = measure([&] {
    int64_t item = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(items));
    return "/api/v1/items/item-" + std::to_string(item) + "/recovery-points?limit=50";
  });
  std::printf("store: %lld items, %lld recovery points (filled in %.1f s)\n", static_cast<long long>(items),
              static_cast<long long>(items * points), fill_s);
  std::printf("%-40s %8s %8s %8s %s\n", "request (page of 50)", "p50 ms", "p99 ms", "target", "p99/target");
  std::printf("%-40s %8.2f %8.2f %8s %.3f %s\n", "GET /items", Percentile(items_ms, 0.5), Percentile(items_ms, 0.99),
              "100", Percentile(items_ms, 0.99) / 100.0, Percentile(items_ms, 0.99) <= 100 ? "PASS" : "MISS");
  std::printf("%-40s %8.2f %8.2f %8s %.3f %s\n", "GET /items/ID/recovery-points", Percentile(points_ms, 0.5),
              Percentile(points_ms, 0.99), "100", Percentile(points_ms, 0.99) / 100.0,
              Percentile(points_ms, 0.99) <= 100 ? "PASS" : "MISS");
  server.Stop();
  c.Stop();
  std::filesystem::remove_all(dir);
  return 0;
}
