// Database: the control plane's relational store behind one small interface, so that the
// server runs on the embedded SQLite (the default) and, later, on PostgreSQL with the same
// code. Callers write portable SQL:
//   - parameters are $1, $2, … (both backends accept them); no other form (?, :name);
//   - one statement per call;
//   - types: BIGINT for 64-bit integers (PostgreSQL's INTEGER is 32-bit), DOUBLE PRECISION
//     for floats (PostgreSQL's REAL is 32-bit), TEXT holding UTF-8 without NUL bytes
//     (PostgreSQL refuses both; SQLite would store them); booleans are 0/1 compared with
//     `= 1`; times are TEXT (RFC 3339 UTC) or BIGINT nanoseconds; JSON documents are TEXT;
//   - no backend-only syntax (no AUTOINCREMENT, no RETURNING, no ON CONFLICT … DO UPDATE
//     beyond what both accept; ids are allocated through the `counters` helper below);
//     string literals in single quotes (the SQLite backend refuses "text" as a literal);
//   - after a failed statement inside a transaction, give up the transaction (return the
//     error from fn): PostgreSQL refuses every later statement of it, SQLite would not.
// docs/decisions/0005-store-interface.md lists the differences callers must avoid.
//
// Thread-safety: a Database may be used from any thread; statements run one at a time per
// Database (SQLite allows one writer anyway). Inside Transaction, use only the Sql& it
// passes: the transaction holds the Database (a call on the Database from inside fn returns
// kInternal rather than deadlock). A committed transaction survives a crash and power loss.
// Errors: kInvalidArgument for SQL the backend rejects (a bug in the caller; the message
// names the statement): syntax, unknown table or column, a $N without a value or a value
// without its $N, several statements in one call, a NOT NULL or CHECK violation;
// kAlreadyExists for a unique or primary-key violation; kFailedPrecondition for a
// foreign-key violation (create or delete the other row first); kAborted when the database
// stayed busy past its timeout (about 5 s; retry the call); kResourceExhausted when the disk
// is full; kIoError for other I/O failures; kDataLoss when the file is damaged or is not a
// database.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"

namespace ferry::store {

// A bound parameter or a column value.
using Value = std::variant<std::monostate, int64_t, double, std::string>;

struct Row {
  std::vector<Value> values;

  bool IsNull(size_t i) const { return std::holds_alternative<std::monostate>(values.at(i)); }
  // Typed accessors; a NULL reads as 0 / 0.0 / "". An integer column read as text is its
  // decimal form; a text column read as an integer is parsed (0 if it is not a number).
  int64_t Int(size_t i) const;
  double Real(size_t i) const;
  std::string Text(size_t i) const;
};

class Sql {
 public:
  virtual ~Sql() = default;
  // Runs one statement and returns its rows (none for statements without results).
  virtual Result<std::vector<Row>> Query(std::string_view sql, const std::vector<Value>& params = {}) = 0;
  // Runs one statement and returns how many rows it changed.
  virtual Result<int64_t> Exec(std::string_view sql, const std::vector<Value>& params = {}) = 0;
};

class Database : public Sql {
 public:
  // Runs fn inside one transaction: committed when fn returns OK, rolled back otherwise (and
  // fn's error is returned). Not reentrant: fn must not call Transaction (kInternal), nor run
  // BEGIN, COMMIT or ROLLBACK itself (kAborted, nothing committed). Takes the write lock at
  // the start, so transactions never fail half-way on a lock conflict.
  virtual Status Transaction(const std::function<Status(Sql&)>& fn) = 0;
  // "sqlite" or "postgresql".
  virtual std::string_view backend() const = 0;
};

// Opens (creating if missing) an SQLite database file in WAL mode with foreign keys on and a
// busy timeout. ":memory:" opens a private in-memory database (tests).
Result<std::unique_ptr<Database>> OpenSqlite(const std::string& path);

// Schema migrations: numbered, applied in order, each once, each in its own transaction,
// recorded in the table schema_migrations(version INTEGER PRIMARY KEY, name TEXT,
// applied_at TEXT). Numbers are never reused or changed once released.
struct Migration {
  int version;
  std::string name;
  std::vector<std::string> statements;
};
// Applies the migrations above the database's version. kFailedPrecondition when the database
// is newer than these migrations (a newer server wrote it: upgrade this one), when the
// list is not strictly increasing from 1, or when the migrations the database applied are
// not this list's up to its version with the same names (a number reused or removed, or a
// migration inserted below the version). A failing migration returns its statement's error
// and leaves the database at the previous version.
Status Migrate(Database& db, const std::vector<Migration>& migrations);
// The highest applied version, 0 for a new database.
Result<int> SchemaVersion(Database& db);

// Allocates the next number of a named sequence (ids like job-17), starting at 1, inside the
// caller's transaction: a rolled-back transaction's number is handed out again. Called on a
// Database itself, it runs its own transaction. Uses the table counters(name TEXT PRIMARY
// KEY, value BIGINT), which Migrate creates.
Result<int64_t> NextId(Sql& sql, std::string_view counter);

}  // namespace ferry::store
