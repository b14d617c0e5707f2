// Schema migrations and named counters, in portable SQL over any Database.
//
// A migration's statements and its schema_migrations row commit in one transaction, so a crash
// or a failing statement leaves the database at the previous version with none of the
// migration's tables. Each transaction checks the version again, so two servers migrating the
// same database at once apply every migration once.
#include <string>
#include <vector>

#include "base/clock.h"
#include "store/database.h"

namespace ferry::store {
namespace {

// Created by every Migrate, before the numbered migrations; never changed.
constexpr std::string_view kBootstrap[] = {
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
};

std::string Describe(int version, const std::string& name) {
  return "migration " + std::to_string(version) + " '" + name + "'";
}

Status CheckOrder(const std::vector<Migration>& migrations) {
  int previous = 0;
  for (const Migration& m : migrations) {
    if (m.version <= previous) {
      return FailedPrecondition(Describe(m.version, m.name) + " follows version " +
                                std::to_string(previous) +
                                ": migration numbers must start at 1 and strictly increase");
    }
    previous = m.version;
  }
  return Status::Ok();
}

// The database's applied migrations must be exactly this list's migrations up to its version:
// a number reused for another migration, or a migration inserted below the database's
// version, would otherwise be skipped without a word.
Status CheckApplied(const std::vector<Row>& applied, const std::vector<Migration>& migrations) {
  const int current = applied.empty() ? 0 : static_cast<int>(applied.back().Int(0));
  const int newest = migrations.empty() ? 0 : migrations.back().version;
  if (current > newest) {
    return FailedPrecondition("the database's schema is at version " + std::to_string(current) +
                              ", newer than this server's newest migration " +
                              std::to_string(newest) +
                              ": a newer server wrote it; upgrade this server");
  }
  auto unknown = [&](const Row& row) {
    return FailedPrecondition("the database has " +
                              Describe(static_cast<int>(row.Int(0)), row.Text(1)) +
                              ", which this server's list does not have: numbers are never "
                              "removed or changed once released");
  };
  size_t a = 0;
  for (const Migration& m : migrations) {
    if (m.version > current) break;
    if (a < applied.size() && applied[a].Int(0) < m.version) return unknown(applied[a]);
    if (a == applied.size() || applied[a].Int(0) != m.version) {
      return FailedPrecondition(Describe(m.version, m.name) + " is below the database's version " +
                                std::to_string(current) +
                                " but was never applied: add migrations with new numbers "
                                "above the newest, never in between");
    }
    if (applied[a].Text(1) != m.name) {
      return FailedPrecondition(Describe(m.version, m.name) + " was applied to this database as '" +
                                applied[a].Text(1) +
                                "': numbers are never reused or changed once released");
    }
    ++a;
  }
  if (a < applied.size()) return unknown(applied[a]);
  return Status::Ok();
}

Result<bool> HasMigrationsTable(Database& db) {
  const std::string_view sql =
      db.backend() == "sqlite"
          ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
          : "SELECT COUNT(*) FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = $1";
  ASSIGN_OR_RETURN(std::vector<Row> rows, db.Query(sql, {std::string("schema_migrations")}));
  return !rows.empty() && rows[0].Int(0) > 0;
}

Status Apply(Sql& tx, const Migration& m) {
  ASSIGN_OR_RETURN(std::vector<Row> newer,
                   tx.Query("SELECT COUNT(*) FROM schema_migrations WHERE version >= $1",
                            {int64_t{m.version}}));
  if (!newer.empty() && newer[0].Int(0) > 0) return Status::Ok();  // another server was faster
  for (size_t i = 0; i < m.statements.size(); ++i) {
    Status status = tx.Exec(m.statements[i]).status();
    if (!status.ok()) {
      return status.WithContext(Describe(m.version, m.name) + " statement " +
                                std::to_string(i + 1));
    }
  }
  return tx
      .Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            {int64_t{m.version}, m.name, FormatTime(SystemClock::Default()->NowNanos())})
      .status();
}

}  // namespace

Status Migrate(Database& db, const std::vector<Migration>& migrations) {
  RETURN_IF_ERROR(CheckOrder(migrations));
  RETURN_IF_ERROR(db.Transaction([](Sql& tx) {
    for (std::string_view sql : kBootstrap) RETURN_IF_ERROR(tx.Exec(sql).status());
    return Status::Ok();
  }));
  ASSIGN_OR_RETURN(std::vector<Row> applied,
                   db.Query("SELECT version, name FROM schema_migrations ORDER BY version"));
  RETURN_IF_ERROR(CheckApplied(applied, migrations));
  const int current = applied.empty() ? 0 : static_cast<int>(applied.back().Int(0));
  for (const Migration& m : migrations) {
    if (m.version <= current) continue;
    RETURN_IF_ERROR(db.Transaction([&m](Sql& tx) { return Apply(tx, m); }));
  }
  return Status::Ok();
}

Result<int> SchemaVersion(Database& db) {
  ASSIGN_OR_RETURN(bool exists, HasMigrationsTable(db));
  if (!exists) return 0;
  ASSIGN_OR_RETURN(std::vector<Row> rows, db.Query("SELECT MAX(version) FROM schema_migrations"));
  return rows.empty() ? 0 : static_cast<int>(rows[0].Int(0));  // MAX of no rows is NULL: 0
}

Result<int64_t> NextId(Sql& sql, std::string_view counter) {
  if (counter.empty()) return InvalidArgument("NextId: the counter name is empty");
  // On the Database itself, the increment and the read below need a transaction of their
  // own: between them another caller could take the same number.
  if (auto* db = dynamic_cast<Database*>(&sql)) {
    int64_t id = 0;
    RETURN_IF_ERROR(db->Transaction([&](Sql& tx) -> Status {
      ASSIGN_OR_RETURN(id, NextId(tx, counter));
      return Status::Ok();
    }));
    return id;
  }
  const std::string name(counter);
  const std::string context = "NextId('" + name + "')";
  // One upsert both backends accept; the row stays locked until the caller's commit.
  Status status = sql.Exec(
                         "INSERT INTO counters (name, value) VALUES ($1, 1) "
                         "ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
                         {name})
                      .status();
  if (!status.ok()) return status.WithContext(context);
  Result<std::vector<Row>> rows = sql.Query("SELECT value FROM counters WHERE name = $1", {name});
  if (!rows.ok()) return rows.status().WithContext(context);
  if (rows->size() != 1) return Internal(context + ": the counter's row is missing after its upsert");
  return (*rows)[0].Int(0);
}

}  // namespace ferry::store
