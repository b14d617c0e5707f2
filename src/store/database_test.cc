#include "store/database.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "env/scratch_dir_test_util.h"

namespace ferry::store {
namespace {

using namespace std::string_literals;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
  }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  static std::unique_ptr<Database> Open(const std::string& path) {
    auto db = OpenSqlite(path);
    EXPECT_TRUE(db.ok()) << db.status().ToString();
    return db.ok() ? std::move(db).value() : nullptr;
  }

  static std::vector<Row> Rows(Sql& sql, std::string_view query,
                               const std::vector<Value>& params = {}) {
    auto rows = sql.Query(query, params);
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    return rows.ok() ? std::move(rows).value() : std::vector<Row>();
  }

  static int64_t Count(Sql& sql, const std::string& table) {
    auto rows = Rows(sql, "SELECT COUNT(*) FROM " + table);
    return rows.empty() ? -1 : rows[0].Int(0);
  }

  static bool TableExists(Sql& sql, const std::string& table) {
    auto rows = Rows(sql, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
                     {table});
    return !rows.empty() && rows[0].Int(0) == 1;
  }

  test::ScratchDir scratch_{"ferry_store_test"};
  std::filesystem::path dir_;
};

class DatabaseTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    db_ = Open(":memory:");
    ASSERT_NE(db_, nullptr);
  }
  void Exec(std::string_view sql, const std::vector<Value>& params = {}) {
    auto n = db_->Exec(sql, params);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
  }

  std::unique_ptr<Database> db_;
};

TEST_F(DatabaseTest, BackendIsSqlite) { EXPECT_EQ(db_->backend(), "sqlite"); }

TEST_F(DatabaseTest, ParamsBindByNumberInAnyOrderAndRepeated) {
  Exec("CREATE TABLE t (a BIGINT, b TEXT, c BIGINT)");
  Exec("INSERT INTO t (b, a, c) VALUES ($2, $1, $1 + 1)", {int64_t{7}, "x"s});
  auto rows = Rows(*db_, "SELECT a, b, c FROM t WHERE b = $2 AND a = $1", {int64_t{7}, "x"s});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].Int(0), 7);
  EXPECT_EQ(rows[0].Text(1), "x");
  EXPECT_EQ(rows[0].Int(2), 8);
}

TEST_F(DatabaseTest, ParamCountMismatchIsInvalidArgument) {
  auto missing = db_->Query("SELECT $1, $2", {int64_t{1}});
  EXPECT_EQ(missing.status().code(), Code::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("SELECT $1, $2"), std::string_view::npos)
      << missing.status().ToString();
  EXPECT_NE(missing.status().message().find("$2 has no value"), std::string_view::npos);

  auto extra = db_->Query("SELECT $1", {int64_t{1}, int64_t{2}});
  EXPECT_EQ(extra.status().code(), Code::kInvalidArgument);
  EXPECT_NE(extra.status().message().find("no $2"), std::string_view::npos);

  auto gap = db_->Query("SELECT $2", {int64_t{1}, int64_t{2}});
  EXPECT_EQ(gap.status().code(), Code::kInvalidArgument);
  EXPECT_NE(gap.status().message().find("no $1"), std::string_view::npos);

  EXPECT_EQ(db_->Query("SELECT $1").status().code(), Code::kInvalidArgument);
  // Only $N is portable: SQLite's other forms are refused.
  EXPECT_EQ(db_->Query("SELECT ?", {int64_t{1}}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(db_->Query("SELECT :a", {int64_t{1}}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(db_->Query("SELECT $01", {int64_t{1}}).status().code(), Code::kInvalidArgument);
}

TEST_F(DatabaseTest, ValuesRoundTripWithTheirTypes) {
  Exec("CREATE TABLE v (id BIGINT, x)");  // no declared type: SQLite keeps each value's own
  const std::vector<Value> values = {
      std::monostate(),
      int64_t{0},
      std::numeric_limits<int64_t>::min(),
      std::numeric_limits<int64_t>::max(),
      1.5,
      -0.25,
      std::numeric_limits<double>::max(),
      ""s,
      "plain"s,
      "nul\0in the middle\0"s,
      "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93"s,
      std::string(100'000, 'z'),
  };
  for (size_t i = 0; i < values.size(); ++i) {
    Exec("INSERT INTO v (id, x) VALUES ($1, $2)", {static_cast<int64_t>(i), values[i]});
  }
  auto rows = Rows(*db_, "SELECT x FROM v ORDER BY id");
  ASSERT_EQ(rows.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(rows[i].values.size(), 1u);
    EXPECT_TRUE(rows[i].values[0] == values[i]) << "value " << i;
  }
  EXPECT_TRUE(rows[0].IsNull(0));
  EXPECT_EQ(rows[9].Text(0).size(), 18u);

  // Straight through a SELECT, too.
  for (size_t i = 0; i < values.size(); ++i) {
    auto echo = Rows(*db_, "SELECT $1", {values[i]});
    ASSERT_EQ(echo.size(), 1u);
    EXPECT_TRUE(echo[0].values[0] == values[i]) << "value " << i;
  }
}

TEST_F(DatabaseTest, PortableColumnTypesKeepTheirValues) {
  Exec("CREATE TABLE p (i BIGINT PRIMARY KEY, r DOUBLE PRECISION, t TEXT, b BIGINT)");
  Exec("INSERT INTO p (i, r, t, b) VALUES ($1, $2, $3, $4)",
       {std::numeric_limits<int64_t>::max(), int64_t{3}, "2026-11-26T05:06:18Z"s, int64_t{1}});
  auto rows = Rows(*db_, "SELECT i, r, t FROM p WHERE b = 1");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_TRUE(rows[0].values[0] == Value(std::numeric_limits<int64_t>::max()));
  EXPECT_TRUE(rows[0].values[1] == Value(3.0));  // the column's type, as PostgreSQL returns it
  EXPECT_EQ(rows[0].Text(2), "2026-11-26T05:06:18Z");
}

TEST_F(DatabaseTest, QueryWithoutRowsAndExecCounts) {
  Exec("CREATE TABLE t (a BIGINT)");
  for (int64_t i = 0; i < 3; ++i) Exec("INSERT INTO t (a) VALUES ($1)", {i});
  auto changed = db_->Exec("UPDATE t SET a = a + 10 WHERE a >= $1", {int64_t{1}});
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(*changed, 2);
  // Statements that change nothing report 0, not the previous UPDATE's count.
  auto select = db_->Exec("SELECT a FROM t");
  ASSERT_TRUE(select.ok());
  EXPECT_EQ(*select, 0);
  auto create = db_->Exec("CREATE TABLE u (a BIGINT)");
  ASSERT_TRUE(create.ok());
  EXPECT_EQ(*create, 0);
  auto none = db_->Query("DELETE FROM u");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(DatabaseTest, TransactionCommits) {
  Exec("CREATE TABLE t (a BIGINT)");
  Status status = db_->Transaction([](Sql& tx) {
    RETURN_IF_ERROR(tx.Exec("INSERT INTO t (a) VALUES (1)").status());
    return tx.Exec("INSERT INTO t (a) VALUES (2)").status();
  });
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(Count(*db_, "t"), 2);
}

TEST_F(DatabaseTest, TransactionRollsBackWhenFnFails) {
  Exec("CREATE TABLE t (a BIGINT)");
  Status status = db_->Transaction([this](Sql& tx) {
    EXPECT_TRUE(tx.Exec("INSERT INTO t (a) VALUES (1)").ok());
    EXPECT_EQ(Count(tx, "t"), 1);  // visible inside
    return NotFound("host h1");
  });
  EXPECT_EQ(status.code(), Code::kNotFound);
  EXPECT_EQ(status.message(), "host h1");
  EXPECT_EQ(Count(*db_, "t"), 0);
}

TEST_F(DatabaseTest, TransactionRollsBackWhenAStatementFails) {
  Exec("CREATE TABLE t (a BIGINT PRIMARY KEY)");
  Status status = db_->Transaction([](Sql& tx) {
    RETURN_IF_ERROR(tx.Exec("INSERT INTO t (a) VALUES (1)").status());
    return tx.Exec("INSERT INTO t (a) VALUES (1)").status();
  });
  EXPECT_EQ(status.code(), Code::kAlreadyExists);
  EXPECT_EQ(Count(*db_, "t"), 0);
}

TEST_F(DatabaseTest, CallsOnTheDatabaseInsideItsTransactionFailInsteadOfDeadlocking) {
  Exec("CREATE TABLE t (a BIGINT)");
  Status status = db_->Transaction([this](Sql& tx) {
    EXPECT_EQ(db_->Query("SELECT 1").status().code(), Code::kInternal);
    EXPECT_EQ(db_->Exec("INSERT INTO t (a) VALUES (9)").status().code(), Code::kInternal);
    EXPECT_EQ(db_->Transaction([](Sql&) { return Status::Ok(); }).code(), Code::kInternal);
    return tx.Exec("INSERT INTO t (a) VALUES (1)").status();
  });
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(Count(*db_, "t"), 1);
}

TEST_F(DatabaseTest, FnEndingTheTransactionItselfIsAborted) {
  Exec("CREATE TABLE t (a BIGINT)");
  Status status = db_->Transaction([](Sql& tx) {
    RETURN_IF_ERROR(tx.Exec("INSERT INTO t (a) VALUES (1)").status());
    return tx.Exec("ROLLBACK").status();
  });
  EXPECT_EQ(status.code(), Code::kAborted);
  EXPECT_EQ(Count(*db_, "t"), 0);
  EXPECT_TRUE(db_->Transaction([](Sql& tx) { return tx.Exec("SELECT 1").status(); }).ok());
}

TEST_F(DatabaseTest, StrayBeginIsRolledBackAndInvalidArgument) {
  Exec("CREATE TABLE t (a BIGINT)");
  EXPECT_EQ(db_->Exec("BEGIN").status().code(), Code::kInvalidArgument);
  Exec("INSERT INTO t (a) VALUES (1)");  // autocommit again
  EXPECT_TRUE(db_->Transaction([](Sql& tx) { return tx.Exec("SELECT 1").status(); }).ok());
  EXPECT_EQ(Count(*db_, "t"), 1);
}

TEST_F(DatabaseTest, UniqueViolationIsAlreadyExists) {
  Exec("CREATE TABLE hosts (id TEXT PRIMARY KEY, addr TEXT UNIQUE)");
  Exec("INSERT INTO hosts (id, addr) VALUES ($1, $2)", {"h1"s, "10.0.0.1"s});
  auto same_key = db_->Exec("INSERT INTO hosts (id, addr) VALUES ($1, $2)", {"h1"s, "10.0.0.2"s});
  EXPECT_EQ(same_key.status().code(), Code::kAlreadyExists);
  EXPECT_NE(same_key.status().message().find("INSERT INTO hosts"), std::string_view::npos);
  auto same_addr =
      db_->Exec("INSERT INTO hosts (id, addr) VALUES ($1, $2)", {"h2"s, "10.0.0.1"s});
  EXPECT_EQ(same_addr.status().code(), Code::kAlreadyExists);
  Exec("CREATE TABLE seq (n INTEGER PRIMARY KEY)");
  Exec("INSERT INTO seq (n) VALUES (1)");
  EXPECT_EQ(db_->Exec("INSERT INTO seq (n) VALUES (1)").status().code(), Code::kAlreadyExists);
}

TEST_F(DatabaseTest, OtherConstraintsHaveTheirOwnCodes) {
  Exec("CREATE TABLE parent (id TEXT PRIMARY KEY)");
  Exec("CREATE TABLE child (id TEXT PRIMARY KEY, parent TEXT NOT NULL REFERENCES parent (id))");
  // Foreign keys are on: a missing parent is a state to fix first.
  EXPECT_EQ(db_->Exec("INSERT INTO child (id, parent) VALUES ('c', 'p')").status().code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(db_->Exec("INSERT INTO child (id, parent) VALUES ('c', NULL)").status().code(),
            Code::kInvalidArgument);
}

TEST_F(DatabaseTest, BadSqlIsInvalidArgument) {
  auto typo = db_->Query("SELEC 1");
  EXPECT_EQ(typo.status().code(), Code::kInvalidArgument);
  EXPECT_NE(typo.status().message().find("SELEC 1"), std::string_view::npos);
  EXPECT_EQ(db_->Query("SELECT * FROM missing").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(db_->Exec("").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(db_->Exec("  -- nothing\n").status().code(), Code::kInvalidArgument);
  // A second statement would silently not run.
  EXPECT_EQ(db_->Exec("CREATE TABLE a (x TEXT); CREATE TABLE b (x TEXT)").status().code(),
            Code::kInvalidArgument);
  EXPECT_FALSE(TableExists(*db_, "a"));
  EXPECT_TRUE(db_->Exec("CREATE TABLE a (x TEXT); -- trailing comment\n").ok());
  // "text" is a column name in PostgreSQL; SQLite's fallback to a string is off.
  EXPECT_EQ(db_->Query("SELECT \"not a column\"").status().code(), Code::kInvalidArgument);
}

TEST_F(DatabaseTest, StatementCacheEvictsAndStillRuns) {
  Exec("CREATE TABLE t (a BIGINT)");
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 300; ++i) {
      auto rows = Rows(*db_, "SELECT " + std::to_string(i) + " + $1", {int64_t{1}});
      ASSERT_EQ(rows.size(), 1u);
      EXPECT_EQ(rows[0].Int(0), i + 1);
    }
  }
}

TEST(StoreRowTest, AccessorsConvert) {
  Row row{{std::monostate(), int64_t{-42}, 2.75, "123"s, "x1"s, "12.9"s, 1e300, -1e300,
           std::numeric_limits<double>::quiet_NaN()}};
  EXPECT_TRUE(row.IsNull(0));
  EXPECT_FALSE(row.IsNull(1));
  EXPECT_EQ(row.Int(0), 0);
  EXPECT_EQ(row.Real(0), 0.0);
  EXPECT_EQ(row.Text(0), "");
  EXPECT_EQ(row.Int(1), -42);
  EXPECT_EQ(row.Real(1), -42.0);
  EXPECT_EQ(row.Text(1), "-42");
  EXPECT_EQ(row.Int(2), 2);
  EXPECT_EQ(row.Text(2), "2.75");
  EXPECT_EQ(row.Int(3), 123);
  EXPECT_EQ(row.Real(3), 123.0);
  EXPECT_EQ(row.Int(4), 0);
  EXPECT_EQ(row.Real(4), 0.0);
  EXPECT_EQ(row.Int(5), 12);
  EXPECT_EQ(row.Real(5), 12.9);
  EXPECT_EQ(row.Int(6), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(row.Int(7), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(row.Int(8), 0);
  EXPECT_THROW((void)row.Int(9), std::out_of_range);
}

TEST_F(StoreTest, FileDatabaseUsesWalFullSyncAndForeignKeys) {
  auto db = Open(Path("ferry.db"));
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(Rows(*db, "PRAGMA journal_mode")[0].Text(0), "wal");
  EXPECT_EQ(Rows(*db, "PRAGMA synchronous")[0].Int(0), 2);  // FULL
  EXPECT_EQ(Rows(*db, "PRAGMA foreign_keys")[0].Int(0), 1);
  EXPECT_EQ(Rows(*db, "PRAGMA busy_timeout")[0].Int(0), 5000);
}

TEST_F(StoreTest, ReopenedDatabaseSeesCommittedData) {
  {
    auto db = Open(Path("ferry.db"));
    ASSERT_NE(db, nullptr);
    ASSERT_TRUE(db->Exec("CREATE TABLE t (a TEXT)").ok());
    ASSERT_TRUE(db->Transaction([](Sql& tx) {
                    return tx.Exec("INSERT INTO t (a) VALUES ($1)", {"kept"s}).status();
                  }).ok());
    ASSERT_EQ(db->Transaction([](Sql& tx) {
                  EXPECT_TRUE(tx.Exec("INSERT INTO t (a) VALUES ($1)", {"dropped"s}).ok());
                  return Aborted("stop");
                }).code(),
              Code::kAborted);
  }
  auto db = Open(Path("ferry.db"));
  ASSERT_NE(db, nullptr);
  auto rows = Rows(*db, "SELECT a FROM t");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].Text(0), "kept");
}

TEST_F(StoreTest, NonDatabaseFileIsDataLoss) {
  const std::string path = Path("notes.txt");
  {
    std::ofstream out(path);
    for (int i = 0; i < 200; ++i) out << "this is a text file, not a database\n";
  }
  auto db = OpenSqlite(path);
  ASSERT_EQ(db.status().code(), Code::kDataLoss) << db.status().ToString();
  EXPECT_NE(db.status().message().find(path), std::string_view::npos);
  EXPECT_NE(db.status().message().find("backup"), std::string_view::npos);
}

TEST_F(StoreTest, MissingDirectoryIsIoError) {
  auto db = OpenSqlite(Path("no/such/dir/ferry.db"));
  EXPECT_EQ(db.status().code(), Code::kIoError) << db.status().ToString();
}

TEST_F(StoreTest, DatabaseBusyPastTimeoutIsAborted) {
  auto holder = Open(Path("ferry.db"));
  auto other = Open(Path("ferry.db"));
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(holder->Exec("CREATE TABLE t (a BIGINT)").ok());
  Status status = holder->Transaction([&](Sql& tx) {
    RETURN_IF_ERROR(tx.Exec("INSERT INTO t (a) VALUES (1)").status());
    // A second connection (another process, in production) waits the busy timeout, then
    // gives up.
    auto blocked = other->Exec("INSERT INTO t (a) VALUES (2)");
    EXPECT_EQ(blocked.status().code(), Code::kAborted) << blocked.status().ToString();
    EXPECT_NE(blocked.status().message().find("retry"), std::string_view::npos);
    return Status::Ok();
  });
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(Count(*other, "t"), 1);
}

TEST_F(StoreTest, ConcurrentTransactionsFromEightThreads) {
  auto db = Open(Path("ferry.db"));
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(Migrate(*db, {{1, "jobs", {"CREATE TABLE jobs (id BIGINT PRIMARY KEY, "
                                         "worker BIGINT NOT NULL, step BIGINT NOT NULL)",
                                         "CREATE TABLE log (worker BIGINT, step BIGINT)"}}})
                  .ok());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 40;
  std::vector<std::thread> threads;
  for (int w = 0; w < kThreads; ++w) {
    threads.emplace_back([&db, w] {
      for (int s = 0; s < kPerThread; ++s) {
        Status status = db->Transaction([&](Sql& tx) -> Status {
          ASSIGN_OR_RETURN(int64_t id, NextId(tx, "job"));
          RETURN_IF_ERROR(tx.Exec("INSERT INTO jobs (id, worker, step) VALUES ($1, $2, $3)",
                                  {id, int64_t{w}, int64_t{s}})
                              .status());
          return tx.Exec("INSERT INTO log (worker, step) VALUES ($1, $2)", {int64_t{w}, int64_t{s}})
              .status();
        });
        EXPECT_TRUE(status.ok()) << status.ToString();
        // Plain statements interleave with other threads' transactions.
        EXPECT_TRUE(db->Query("SELECT COUNT(*) FROM jobs").ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(Count(*db, "jobs"), kThreads * kPerThread);
  EXPECT_EQ(Count(*db, "log"), kThreads * kPerThread);
  auto ids = Rows(*db, "SELECT MIN(id), MAX(id), COUNT(DISTINCT id) FROM jobs");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(ids[0].Int(0), 1);
  EXPECT_EQ(ids[0].Int(1), kThreads * kPerThread);
  EXPECT_EQ(ids[0].Int(2), kThreads * kPerThread);
}

// --- Migrations -----------------------------------------------------------------------------

std::vector<Migration> TwoMigrations() {
  return {
      {1, "hosts", {"CREATE TABLE hosts (id TEXT PRIMARY KEY, name TEXT NOT NULL)"}},
      {2, "jobs",
       {"CREATE TABLE jobs (id BIGINT PRIMARY KEY, host TEXT REFERENCES hosts (id))",
        "CREATE INDEX jobs_by_host ON jobs (host)"}},
  };
}

class MigrateTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    db_ = Open(":memory:");
    ASSERT_NE(db_, nullptr);
  }
  int Version() {
    auto v = SchemaVersion(*db_);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? *v : -1;
  }

  std::unique_ptr<Database> db_;
};

TEST_F(MigrateTest, NewDatabaseIsVersionZero) { EXPECT_EQ(Version(), 0); }

TEST_F(MigrateTest, AppliesEachMigrationOnce) {
  ASSERT_TRUE(Migrate(*db_, TwoMigrations()).ok());
  EXPECT_EQ(Version(), 2);
  EXPECT_TRUE(TableExists(*db_, "hosts"));
  EXPECT_TRUE(TableExists(*db_, "jobs"));
  EXPECT_TRUE(TableExists(*db_, "counters"));
  ASSERT_TRUE(db_->Exec("INSERT INTO hosts (id, name) VALUES ('h1', 'web')").ok());

  // A second run (every server start) changes nothing.
  Status again = Migrate(*db_, TwoMigrations());
  ASSERT_TRUE(again.ok()) << again.ToString();
  EXPECT_EQ(Version(), 2);
  EXPECT_EQ(Count(*db_, "schema_migrations"), 2);
  EXPECT_EQ(Count(*db_, "hosts"), 1);
  auto recorded = Rows(*db_, "SELECT version, name, applied_at FROM schema_migrations ORDER BY 1");
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[1].Int(0), 2);
  EXPECT_EQ(recorded[1].Text(1), "jobs");
  EXPECT_EQ(recorded[1].Text(2).back(), 'Z');  // RFC 3339 UTC
}

TEST_F(MigrateTest, LaterServerAppliesOnlyTheNewMigrations) {
  auto list = TwoMigrations();
  ASSERT_TRUE(Migrate(*db_, {list[0]}).ok());
  EXPECT_EQ(Version(), 1);
  EXPECT_FALSE(TableExists(*db_, "jobs"));
  ASSERT_TRUE(Migrate(*db_, list).ok());
  EXPECT_EQ(Version(), 2);
  EXPECT_TRUE(TableExists(*db_, "jobs"));
}

TEST_F(MigrateTest, NewerDatabaseIsFailedPrecondition) {
  ASSERT_TRUE(Migrate(*db_, TwoMigrations()).ok());
  Status older = Migrate(*db_, {TwoMigrations()[0]});
  EXPECT_EQ(older.code(), Code::kFailedPrecondition);
  EXPECT_NE(older.message().find("upgrade"), std::string_view::npos) << older.ToString();
  EXPECT_EQ(Migrate(*db_, {}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(Version(), 2);
}

TEST_F(MigrateTest, NonIncreasingListIsFailedPrecondition) {
  auto list = TwoMigrations();
  EXPECT_EQ(Migrate(*db_, {list[1], list[0]}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(Migrate(*db_, {list[0], list[0]}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(Migrate(*db_, {{0, "zero", {}}}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(Migrate(*db_, {{-1, "negative", {}}}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(Version(), 0);
  EXPECT_FALSE(TableExists(*db_, "hosts"));
}

TEST_F(MigrateTest, FailingMigrationLeavesPreviousVersionAndNoPartialTables) {
  auto list = TwoMigrations();
  list.push_back({3, "broken",
                  {"CREATE TABLE plans (id TEXT PRIMARY KEY)",
                   "INSERT INTO hosts (id, name) VALUES ('h1', 'web')",
                   "CREATE TABLE steps (id TEXT PRIMARY KEY, plan TEXT REFERENCES plans (id)"}});
  Status status = Migrate(*db_, list);
  EXPECT_EQ(status.code(), Code::kInvalidArgument);
  EXPECT_NE(status.message().find("migration 3 'broken' statement 3"), std::string_view::npos)
      << status.ToString();
  EXPECT_EQ(Version(), 2);  // 1 and 2 committed before 3 failed
  EXPECT_FALSE(TableExists(*db_, "plans"));
  EXPECT_FALSE(TableExists(*db_, "steps"));
  EXPECT_EQ(Count(*db_, "hosts"), 0);

  list[2].statements[2] += ")";
  ASSERT_TRUE(Migrate(*db_, list).ok());
  EXPECT_EQ(Version(), 3);
  EXPECT_TRUE(TableExists(*db_, "steps"));
}

TEST_F(MigrateTest, ReusedNumberIsFailedPrecondition) {
  ASSERT_TRUE(Migrate(*db_, TwoMigrations()).ok());
  auto list = TwoMigrations();
  list[1].name = "jobs-v2";
  EXPECT_EQ(Migrate(*db_, list).code(), Code::kFailedPrecondition);
}

TEST_F(MigrateTest, MigrationInsertedBelowTheVersionIsFailedPrecondition) {
  auto list = TwoMigrations();
  list[1].version = 3;
  ASSERT_TRUE(Migrate(*db_, list).ok());
  list.insert(list.begin() + 1, Migration{2, "late", {"CREATE TABLE late (x TEXT)"}});
  EXPECT_EQ(Migrate(*db_, list).code(), Code::kFailedPrecondition);
  list.erase(list.begin() + 1);
  list.erase(list.begin());  // a migration the database has and this list lacks
  EXPECT_EQ(Migrate(*db_, list).code(), Code::kFailedPrecondition);
  EXPECT_FALSE(TableExists(*db_, "late"));
}

// --- NextId ---------------------------------------------------------------------------------

TEST_F(MigrateTest, NextIdCountsPerCounter) {
  ASSERT_TRUE(Migrate(*db_, {}).ok());
  std::vector<int64_t> got;
  Status status = db_->Transaction([&](Sql& tx) -> Status {
    for (const char* name : {"job", "job", "host", "job"}) {
      ASSIGN_OR_RETURN(int64_t id, NextId(tx, name));
      got.push_back(id);
    }
    return Status::Ok();
  });
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(got, (std::vector<int64_t>{1, 2, 1, 3}));
  // On the Database itself NextId runs its own transaction.
  auto next = NextId(*db_, "job");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, 4);
  EXPECT_EQ(NextId(*db_, "").status().code(), Code::kInvalidArgument);
}

TEST_F(MigrateTest, NextIdOfARolledBackTransactionIsTakenAgain) {
  ASSERT_TRUE(Migrate(*db_, {}).ok());
  ASSERT_EQ(*NextId(*db_, "plan"), 1);
  Status status = db_->Transaction([](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(int64_t id, NextId(tx, "plan"));
    EXPECT_EQ(id, 2);
    return Aborted("crash");
  });
  EXPECT_EQ(status.code(), Code::kAborted);
  EXPECT_EQ(*NextId(*db_, "plan"), 2);
}

TEST_F(StoreTest, NextIdSurvivesReopen) {
  {
    auto db = Open(Path("ferry.db"));
    ASSERT_NE(db, nullptr);
    ASSERT_TRUE(Migrate(*db, TwoMigrations()).ok());
    EXPECT_EQ(*NextId(*db, "job"), 1);
    EXPECT_EQ(*NextId(*db, "job"), 2);
  }
  auto db = Open(Path("ferry.db"));
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(Migrate(*db, TwoMigrations()).ok());
  EXPECT_EQ(*NextId(*db, "job"), 3);
  auto v = SchemaVersion(*db);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 2);
}

}  // namespace
}  // namespace ferry::store
