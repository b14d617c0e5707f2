// The SQLite backend of Database: one connection guarded by a mutex, with a bounded cache of
// prepared statements keyed by SQL text.
//
// Locking: Query and Exec on the Database take the mutex for one statement (autocommit).
// Transaction takes it for the whole of fn and hands fn a TransactionSql that runs statements on
// the connection without locking again. The thread that holds a transaction is remembered, so
// that a call on the Database from inside fn fails with kInternal instead of deadlocking.
#include <sqlite3.h>

#include <atomic>
#include <climits>
#include <cstring>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "store/database.h"

namespace ferry::store {
namespace {

constexpr int kBusyTimeoutMillis = 5000;
constexpr size_t kStatementCacheSize = 256;
constexpr size_t kSqlInMessages = 160;

// The statement as messages show it: whitespace collapsed, long text cut.
std::string Quote(std::string_view sql) {
  std::string out = "`";
  bool space = false;
  for (char c : sql) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      space = out.size() > 1;
      continue;
    }
    if (out.size() > kSqlInMessages) {
      out += "...";
      break;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  out += '`';
  return out;
}

// The N of a parameter named "$N" (N >= 1, no leading zero); 0 for any other name.
size_t ParamNumber(const char* name) {
  if (name == nullptr || name[0] != '$' || name[1] < '1' || name[1] > '9') return 0;
  size_t n = 0;
  for (const char* p = name + 1; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9' || n > 100'000'000) return 0;
    n = n * 10 + static_cast<size_t>(*p - '0');
  }
  return n;
}

template <typename F>
class ScopeExit {
 public:
  explicit ScopeExit(F f) : f_(std::move(f)) {}
  ~ScopeExit() { f_(); }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;

 private:
  F f_;
};

// Prepared statements by SQL text, least recently used evicted first. Owns the statements.
class StatementCache {
 public:
  explicit StatementCache(size_t capacity) : capacity_(capacity) {}
  ~StatementCache() { Clear(); }
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  sqlite3_stmt* Find(std::string_view sql) {
    auto it = index_.find(sql);
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }

  void Insert(std::string sql, sqlite3_stmt* stmt) {
    if (lru_.size() >= capacity_) {
      auto& oldest = lru_.back();
      sqlite3_finalize(oldest.second);
      index_.erase(oldest.first);
      lru_.pop_back();
    }
    lru_.emplace_front(std::move(sql), stmt);
    index_.emplace(lru_.front().first, lru_.begin());
  }

  void Clear() {
    for (auto& entry : lru_) sqlite3_finalize(entry.second);
    index_.clear();
    lru_.clear();
  }

 private:
  using Entry = std::pair<std::string, sqlite3_stmt*>;
  size_t capacity_;
  std::list<Entry> lru_;  // most recently used first; list nodes keep index_'s keys valid
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
};

// One sqlite3 connection. Not thread-safe: SqliteDatabase serializes the calls.
class Connection {
 public:
  Connection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~Connection() {
    cache_.Clear();
    sqlite3_close_v2(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one statement, appending its rows to *rows when rows is not null. Returns how many
  // rows it changed (0 for statements that change none, such as SELECT or CREATE TABLE).
  Result<int64_t> Run(std::string_view sql, const std::vector<Value>& params,
                      std::vector<Row>* rows) {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql));
    // A statement left unreset would keep its read snapshot (and block WAL checkpoints).
    ScopeExit reset([stmt] {
      sqlite3_reset(stmt);
      sqlite3_clear_bindings(stmt);
    });
    RETURN_IF_ERROR(Bind(stmt, sql, params));
    const int64_t changes_before = sqlite3_total_changes64(db_);
    for (;;) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return Error(rc, Quote(sql));
      if (rows != nullptr) {
        rows->emplace_back();
        RETURN_IF_ERROR(ReadRow(stmt, sql, &rows->back()));
      }
    }
    // sqlite3_changes64 still reports the last INSERT/UPDATE/DELETE after other statements.
    return sqlite3_total_changes64(db_) == changes_before ? 0 : sqlite3_changes64(db_);
  }

  bool InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }
  const std::string& path() const { return path_; }

  // Best effort: a failed rollback leaves nothing committed either.
  void Rollback() {
    if (InTransaction()) (void)Run("ROLLBACK", {}, nullptr);
  }

  // Maps an SQLite result code to the Status that tells the caller what to do.
  Status Error(int rc, std::string_view what) const {
    std::string m = path_ + ": " + std::string(what) + ": " + sqlite3_errmsg(db_);
    const int os_errno = sqlite3_system_errno(db_);
    switch (rc & 0xff) {
      case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY ||
            rc == SQLITE_CONSTRAINT_ROWID) {
          return AlreadyExists(std::move(m));
        }
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return FailedPrecondition(std::move(m));
        return InvalidArgument(std::move(m));
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        return Aborted(m + " (still locked by another connection after " +
                       std::to_string(kBusyTimeoutMillis / 1000) + " s; retry)");
      case SQLITE_INTERRUPT:
      case SQLITE_SCHEMA:
        return Aborted(m + " (retry)");
      case SQLITE_CORRUPT:
      case SQLITE_NOTADB:
        return DataLoss(m + " (the file is damaged or is not an SQLite database: restore " +
                        path_ + " from a backup, or move it aside to start with an empty one)");
      case SQLITE_FULL:
        return ResourceExhausted(m + " (free space on the database's filesystem, then retry)");
      case SQLITE_NOMEM:
        return ResourceExhausted(std::move(m));
      case SQLITE_IOERR:
      case SQLITE_CANTOPEN:
      case SQLITE_READONLY:
      case SQLITE_PERM:
      case SQLITE_PROTOCOL:
      case SQLITE_NOLFS:
        if (os_errno != 0) m += std::string(" (") + std::strerror(os_errno) + ")";
        return IoError(std::move(m));
      case SQLITE_ERROR:
      case SQLITE_RANGE:
      case SQLITE_MISMATCH:
      case SQLITE_TOOBIG:
        return InvalidArgument(std::move(m));
      default:
        return Internal(m + " (sqlite result code " + std::to_string(rc) + ")");
    }
  }

 private:
  Result<sqlite3_stmt*> Prepare(std::string_view sql) {
    if (sqlite3_stmt* cached = cache_.Find(sql)) return cached;
    if (sql.size() >= INT_MAX) return InvalidArgument(path_ + ": statement too long");
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) return Error(rc, Quote(sql));
    if (stmt == nullptr) return InvalidArgument(path_ + ": empty statement " + Quote(sql));
    // Only whitespace and comments may follow: a second statement would silently not run.
    const std::string_view rest = sql.substr(static_cast<size_t>(tail - sql.data()));
    if (!rest.empty()) {
      sqlite3_stmt* extra = nullptr;
      rc = sqlite3_prepare_v2(db_, rest.data(), static_cast<int>(rest.size()), &extra, nullptr);
      sqlite3_finalize(extra);
      if (rc != SQLITE_OK || extra != nullptr) {
        sqlite3_finalize(stmt);
        return InvalidArgument(path_ + ": " + Quote(sql) +
                               ": more than one statement; run each in its own call");
      }
    }
    cache_.Insert(std::string(sql), stmt);
    return stmt;
  }

  // Every parameter in the statement must be some $N with a value, and every value must have
  // its $N; a $N may appear several times and in any order.
  Status Bind(sqlite3_stmt* stmt, std::string_view sql, const std::vector<Value>& params) {
    const int count = sqlite3_bind_parameter_count(stmt);
    for (int i = 1; i <= count; ++i) {
      const char* name = sqlite3_bind_parameter_name(stmt, i);
      const size_t n = ParamNumber(name);
      if (n == 0) {
        return InvalidArgument(path_ + ": " + Quote(sql) + ": parameter " +
                               (name ? name : "?") + " is not written $1, $2, ...");
      }
      if (n > params.size()) {
        return InvalidArgument(path_ + ": " + Quote(sql) + ": parameter $" + std::to_string(n) +
                               " has no value (" + std::to_string(params.size()) + " given)");
      }
    }
    for (size_t k = 1; k <= params.size(); ++k) {
      const std::string name = "$" + std::to_string(k);
      const int index = sqlite3_bind_parameter_index(stmt, name.c_str());
      if (index == 0) {
        return InvalidArgument(path_ + ": " + Quote(sql) + ": value " + std::to_string(k) +
                               " given but the statement has no " + name);
      }
      const int rc = std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
              return sqlite3_bind_null(stmt, index);
            } else if constexpr (std::is_same_v<T, int64_t>) {
              return sqlite3_bind_int64(stmt, index, v);
            } else if constexpr (std::is_same_v<T, double>) {
              return sqlite3_bind_double(stmt, index, v);
            } else {
              // With its length, so that text holding NUL bytes round-trips whole.
              return sqlite3_bind_text64(stmt, index, v.data(), v.size(), SQLITE_TRANSIENT,
                                         SQLITE_UTF8);
            }
          },
          params[k - 1]);
      if (rc != SQLITE_OK) return Error(rc, Quote(sql) + " binding " + name);
    }
    return Status::Ok();
  }

  Status ReadRow(sqlite3_stmt* stmt, std::string_view sql, Row* row) {
    const int columns = sqlite3_column_count(stmt);
    row->values.reserve(static_cast<size_t>(columns));
    for (int i = 0; i < columns; ++i) {
      switch (sqlite3_column_type(stmt, i)) {
        case SQLITE_INTEGER:
          row->values.emplace_back(static_cast<int64_t>(sqlite3_column_int64(stmt, i)));
          break;
        case SQLITE_FLOAT:
          row->values.emplace_back(sqlite3_column_double(stmt, i));
          break;
        case SQLITE_TEXT:
        case SQLITE_BLOB: {
          // The pointer first, then the length (the SQLite documentation's order).
          const void* data = sqlite3_column_blob(stmt, i);
          const int size = sqlite3_column_bytes(stmt, i);
          if (data == nullptr && size > 0) return Error(SQLITE_NOMEM, Quote(sql));
          row->values.emplace_back(
              size > 0 ? std::string(static_cast<const char*>(data), static_cast<size_t>(size))
                       : std::string());
          break;
        }
        default:
          row->values.emplace_back(std::monostate());
          break;
      }
    }
    return Status::Ok();
  }

  sqlite3* db_;
  std::string path_;
  StatementCache cache_{kStatementCacheSize};
};

// The Sql& a Transaction passes to fn: the Database's mutex is already held.
class TransactionSql final : public Sql {
 public:
  explicit TransactionSql(Connection* conn) : conn_(conn) {}

  Result<std::vector<Row>> Query(std::string_view sql, const std::vector<Value>& params) override {
    std::vector<Row> rows;
    RETURN_IF_ERROR(conn_->Run(sql, params, &rows).status());
    return rows;
  }
  Result<int64_t> Exec(std::string_view sql, const std::vector<Value>& params) override {
    return conn_->Run(sql, params, nullptr);
  }

 private:
  Connection* conn_;
};

class SqliteDatabase final : public Database {
 public:
  explicit SqliteDatabase(std::unique_ptr<Connection> conn) : conn_(std::move(conn)) {}

  Result<std::vector<Row>> Query(std::string_view sql, const std::vector<Value>& params) override {
    std::vector<Row> rows;
    RETURN_IF_ERROR(RunAlone(sql, params, &rows).status());
    return rows;
  }
  Result<int64_t> Exec(std::string_view sql, const std::vector<Value>& params) override {
    return RunAlone(sql, params, nullptr);
  }

  Status Transaction(const std::function<Status(Sql&)>& fn) override {
    RETURN_IF_ERROR(CheckNotInTransaction("Transaction"));
    std::lock_guard lock(mu_);
    RETURN_IF_ERROR(conn_->Run("BEGIN IMMEDIATE", {}, nullptr).status());
    owner_.store(std::this_thread::get_id());
    TransactionSql tx(conn_.get());
    // Also runs if fn throws: nothing half-done stays behind the released mutex.
    ScopeExit finish([&] {
      conn_->Rollback();  // a no-op after COMMIT
      owner_.store(std::thread::id());
    });
    Status status = fn(tx);
    if (!status.ok()) return status;
    if (!conn_->InTransaction()) {
      return Aborted(
          "sqlite transaction ended before its commit: an earlier error rolled it back (or fn "
          "ran COMMIT or ROLLBACK itself); nothing was committed, retry");
    }
    return conn_->Run("COMMIT", {}, nullptr).status();
  }

  std::string_view backend() const override { return "sqlite"; }

 private:
  Status CheckNotInTransaction(std::string_view call) const {
    if (owner_.load() != std::this_thread::get_id()) return Status::Ok();
    return Internal(std::string(call) +
                    " on the Database inside its own Transaction would deadlock; use the Sql& "
                    "that Transaction passes to fn");
  }

  // One statement in its own implicit transaction.
  Result<int64_t> RunAlone(std::string_view sql, const std::vector<Value>& params,
                           std::vector<Row>* rows) {
    RETURN_IF_ERROR(CheckNotInTransaction(rows ? "Query" : "Exec"));
    std::lock_guard lock(mu_);
    Result<int64_t> result = conn_->Run(sql, params, rows);
    if (conn_->InTransaction()) {
      // A stray BEGIN would make every later caller's statement part of this one transaction.
      conn_->Rollback();
      return InvalidArgument(conn_->path() + ": " + Quote(sql) +
                             ": left a transaction open (rolled back); use Database::Transaction");
    }
    return result;
  }

  std::mutex mu_;
  std::atomic<std::thread::id> owner_{};  // the thread inside Transaction, if any
  std::unique_ptr<Connection> conn_;
};

}  // namespace

Result<std::unique_ptr<Database>> OpenSqlite(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (db == nullptr) return ResourceExhausted(path + ": open: out of memory");
  auto conn = std::make_unique<Connection>(db, path);  // closes db on every return below
  if (rc != SQLITE_OK) return conn->Error(rc, "open");
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMillis);
  // Refuse "text" as a string literal (PostgreSQL reads it as a column name), and writes to
  // the schema tables by hand.
  sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);

  // The first statement reads the file: a file that is not a database fails here (kDataLoss).
  std::vector<Row> mode;
  RETURN_IF_ERROR(conn->Run("PRAGMA journal_mode=WAL", {}, &mode).status());
  const std::string got = mode.empty() ? "" : mode[0].Text(0);
  if (got != "wal" && got != "memory") {
    return FailedPrecondition(path + ": could not switch to WAL journal mode (got '" + got +
                              "'); keep the database on a local filesystem");
  }
  // FULL: a committed transaction survives power loss, not only a crash of the process.
  RETURN_IF_ERROR(conn->Run("PRAGMA synchronous=FULL", {}, nullptr).status());
  RETURN_IF_ERROR(conn->Run("PRAGMA foreign_keys=ON", {}, nullptr).status());
  return std::unique_ptr<Database>(std::make_unique<SqliteDatabase>(std::move(conn)));
}

}  // namespace ferry::store
