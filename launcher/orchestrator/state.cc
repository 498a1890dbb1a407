#include "launcher/orchestrator/state.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <ostream>

#include <fmt/format.h>

namespace m3ret::orchestrator {
namespace {

constexpr int kSchemaVersion = 1;

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  name TEXT PRIMARY KEY, params_json TEXT NOT NULL, data_fraction REAL NOT NULL,
  run_dir TEXT NOT NULL, shards_dir TEXT NOT NULL, state TEXT NOT NULL,
  failures INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, run TEXT NOT NULL,
  grp TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL,
  step INTEGER NOT NULL, backend_id TEXT NOT NULL, command TEXT NOT NULL, job_dir TEXT NOT NULL,
  exit_code INTEGER NOT NULL, reason TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
  run TEXT NOT NULL, step INTEGER NOT NULL, path TEXT NOT NULL, seen REAL NOT NULL,
  PRIMARY KEY (run, step));
CREATE TABLE IF NOT EXISTS evaluations (
  run TEXT NOT NULL, step INTEGER NOT NULL, modality TEXT NOT NULL, metric TEXT NOT NULL,
  value REAL NOT NULL, PRIMARY KEY (run, step, modality, metric));
CREATE TABLE IF NOT EXISTS absent_modalities (
  run TEXT NOT NULL, step INTEGER NOT NULL, modality TEXT NOT NULL, reason TEXT NOT NULL,
  PRIMARY KEY (run, step, modality));
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, run TEXT NOT NULL, job TEXT NOT NULL,
  message TEXT NOT NULL);
)sql";

// One prepared statement; binds by position, steps, finalizes.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) {
      throw Error(fmt::format("sqlite: {}: {}", sql, sqlite3_errmsg(db)));
    }
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, int v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  // True while there is a row.
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw Error(fmt::format("sqlite: {}: {}", sqlite3_sql(s_), sqlite3_errmsg(db_)));
  }
  std::string text(int c) {
    auto* p = sqlite3_column_text(s_, c);
    return p ? reinterpret_cast<const char*>(p) : "";
  }
  int64_t i64(int c) { return sqlite3_column_int64(s_, c); }
  double real(int c) { return sqlite3_column_double(s_, c); }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

const char* kJobColumns =
    "id, name, run, grp, kind, state, attempt, step, backend_id, command, job_dir, exit_code, "
    "reason, created, updated";

JobRow read_job(Stmt& s) {
  JobRow j;
  j.id = s.i64(0);
  j.name = s.text(1);
  j.run = s.text(2);
  j.group = s.text(3);
  j.kind = job_kind_from(s.text(4));
  j.state = job_state_from(s.text(5));
  j.attempt = static_cast<int>(s.i64(6));
  j.step = s.i64(7);
  j.backend_id = s.text(8);
  j.command = s.text(9);
  j.job_dir = s.text(10);
  j.exit_code = static_cast<int>(s.i64(11));
  j.reason = s.text(12);
  j.created = s.real(13);
  j.updated = s.real(14);
  return j;
}

}  // namespace

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

const char* to_string(JobState s) {
  switch (s) {
    case JobState::kIntent:
      return "intent";
    case JobState::kSubmitted:
      return "submitted";
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kPreempted:
      return "preempted";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "?";
}

const char* to_string(JobKind k) {
  switch (k) {
    case JobKind::kData:
      return "data";
    case JobKind::kShard:
      return "shard";
    case JobKind::kTrain:
      return "train";
    case JobKind::kEval:
      return "eval";
  }
  return "?";
}

namespace {

// The value of `all` named `s` (as to_string writes it).
template <class E>
E from_name(const std::string& s, std::initializer_list<E> all, const char* what) {
  for (E e : all)
    if (s == to_string(e)) return e;
  throw Error(fmt::format("unknown {} '{}' in the state database", what, s));
}

}  // namespace

JobState job_state_from(const std::string& s) {
  return from_name(
      s,
      {JobState::kIntent, JobState::kSubmitted, JobState::kRunning, JobState::kSucceeded,
       JobState::kFailed, JobState::kPreempted, JobState::kCancelled},
      "job state");
}

JobKind job_kind_from(const std::string& s) {
  return from_name(s, {JobKind::kData, JobKind::kShard, JobKind::kTrain, JobKind::kEval},
                   "job kind");
}

const char* to_string(RunState s) {
  switch (s) {
    case RunState::kPending:
      return "pending";
    case RunState::kRunning:
      return "running";
    case RunState::kSucceeded:
      return "succeeded";
    case RunState::kFailed:
      return "failed";
    case RunState::kCancelled:
      return "cancelled";
  }
  return "?";
}

RunState run_state_from(const std::string& s) {
  return from_name(s,
                   {RunState::kPending, RunState::kRunning, RunState::kSucceeded, RunState::kFailed,
                    RunState::kCancelled},
                   "run state");
}

std::ostream& operator<<(std::ostream& os, RunState s) { return os << to_string(s); }

bool is_terminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kPreempted ||
         s == JobState::kCancelled;
}

bool transition_allowed(JobState from, JobState to) {
  if (from == to) return true;
  switch (from) {
    case JobState::kIntent:
      return to == JobState::kSubmitted || to == JobState::kCancelled || to == JobState::kFailed;
    case JobState::kSubmitted:
      return to == JobState::kRunning || is_terminal(to);
    case JobState::kRunning:
      return is_terminal(to);
    default:
      return false;  // terminal states are final; a retry is a new job
  }
}

class State::Tx {
 public:
  explicit Tx(State& s) : s_(s) { s_.exec("BEGIN IMMEDIATE"); }
  ~Tx() {
    if (!done_) sqlite3_exec(s_.db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    s_.exec("COMMIT");
    done_ = true;
  }

 private:
  State& s_;
  bool done_ = false;
};

State::State(const std::filesystem::path& db, bool read_only) : path_(db) {
  if (read_only && !std::filesystem::exists(db)) {
    throw Error(fmt::format("state database '{}' does not exist", db.string()));
  }
  if (!read_only && db.has_parent_path()) std::filesystem::create_directories(db.parent_path());
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(db.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw Error(fmt::format("cannot open state database '{}': {}", db.string(), msg));
  }
  sqlite3_busy_timeout(db_, 10000);
  try {
    if (!read_only) {
      exec("PRAGMA journal_mode=WAL");
      exec("PRAGMA synchronous=FULL");
      Tx tx(*this);
      exec(kSchema);
      auto v = meta("schema_version");
      if (!v) {
        Stmt(db_, "INSERT INTO meta VALUES ('schema_version', ?)")
            .bind(1, std::to_string(kSchemaVersion))
            .step();
        Stmt(db_, "INSERT INTO meta VALUES ('format', 'm3ret-orchestrator-state')").step();
      } else if (*v != std::to_string(kSchemaVersion)) {
        throw Error(fmt::format("state database '{}' has schema version {}, this m3ret reads {}",
                                db.string(), *v, kSchemaVersion));
      }
      tx.commit();
    } else if (!meta("schema_version")) {
      throw Error(fmt::format("'{}' is not an m3ret orchestrator state database", db.string()));
    }
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

State::~State() { sqlite3_close(db_); }

void State::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    throw Error(fmt::format("state database '{}': {}", path_.string(), msg));
  }
}

void State::set_meta(const std::string& key, const std::string& value) {
  Stmt(db_, "INSERT OR REPLACE INTO meta VALUES (?, ?)").bind(1, key).bind(2, value).step();
}

std::optional<std::string> State::meta(const std::string& key) {
  try {
    Stmt s(db_, "SELECT value FROM meta WHERE key = ?");
    s.bind(1, key);
    if (s.step()) return s.text(0);
  } catch (const Error&) {
    return std::nullopt;  // no meta table: not our database
  }
  return std::nullopt;
}

void State::upsert_run(const RunRow& r) {
  Tx tx(*this);
  Stmt s(db_, "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)");
  s.bind(1, r.name)
      .bind(2, r.params_json)
      .bind(3, r.data_fraction)
      .bind(4, r.run_dir)
      .bind(5, r.shards_dir)
      .bind(6, std::string(to_string(r.state)))
      .bind(7, r.failures);
  s.step();
  tx.commit();
}

void State::set_run_state(const std::string& run, RunState to, const std::string& why) {
  Tx tx(*this);
  const std::string state = to_string(to);
  Stmt(db_, "UPDATE runs SET state = ? WHERE name = ?").bind(1, state).bind(2, run).step();
  Stmt(db_, "INSERT INTO events (time, run, job, message) VALUES (?, ?, '', ?)")
      .bind(1, now_seconds())
      .bind(2, run)
      .bind(3, "run " + state + (why.empty() ? "" : ": " + why))
      .step();
  tx.commit();
}

void State::add_run_failure(const std::string& run) {
  Stmt(db_, "UPDATE runs SET failures = failures + 1 WHERE name = ?").bind(1, run).step();
}

void State::retry_run(const std::string& run) {
  Tx tx(*this);
  Stmt(db_, "UPDATE runs SET state = 'pending', failures = 0 WHERE name = ?").bind(1, run).step();
  Stmt(db_, "INSERT INTO events (time, run, job, message) VALUES (?, ?, '', 'retry requested')")
      .bind(1, now_seconds())
      .bind(2, run)
      .step();
  tx.commit();
}

std::vector<RunRow> State::runs() {
  std::vector<RunRow> out;
  Stmt s(db_,
         "SELECT name, params_json, data_fraction, run_dir, shards_dir, state, failures "
         "FROM runs ORDER BY name");
  while (s.step()) {
    out.push_back({s.text(0), s.text(1), s.real(2), s.text(3), s.text(4), run_state_from(s.text(5)),
                   static_cast<int>(s.i64(6))});
  }
  return out;
}

std::optional<RunRow> State::run(const std::string& name) {
  for (auto& r : runs())
    if (r.name == name) return r;
  return std::nullopt;
}

int64_t State::add_job(const JobRow& j) {
  Tx tx(*this);
  double t = now_seconds();
  Stmt s(db_,
         "INSERT INTO jobs (name, run, grp, kind, state, attempt, step, backend_id, command, "
         "job_dir, exit_code, reason, created, updated) "
         "VALUES (?, ?, ?, ?, 'intent', ?, ?, '', ?, ?, -1, '', ?, ?)");
  s.bind(1, j.name)
      .bind(2, j.run)
      .bind(3, j.group)
      .bind(4, std::string(to_string(j.kind)))
      .bind(5, j.attempt)
      .bind(6, j.step)
      .bind(7, j.command)
      .bind(8, j.job_dir)
      .bind(9, t)
      .bind(10, t);
  try {
    s.step();
  } catch (const Error& e) {
    throw Error(
        fmt::format("job '{}' already exists in '{}' ({})", j.name, path_.string(), e.what()));
  }
  int64_t id = sqlite3_last_insert_rowid(db_);
  Stmt(db_, "INSERT INTO events (time, run, job, message) VALUES (?, ?, ?, ?)")
      .bind(1, t)
      .bind(2, j.run)
      .bind(3, j.name)
      .bind(4, std::string("intent to submit"))
      .step();
  tx.commit();
  return id;
}

void State::transition(int64_t id, JobState to, const std::string& reason,
                       const std::optional<std::string>& backend_id, std::optional<int> exit_code) {
  Tx tx(*this);
  auto j = job(id);
  if (!j) throw Error(fmt::format("no job {} in '{}'", id, path_.string()));
  if (!transition_allowed(j->state, to)) {
    throw Error(fmt::format("job '{}': illegal transition {} -> {}", j->name, to_string(j->state),
                            to_string(to)));
  }
  if (j->state == to && !backend_id && !exit_code) return;
  Stmt s(db_,
         "UPDATE jobs SET state = ?, reason = ?, backend_id = ?, exit_code = ?, updated = ? "
         "WHERE id = ?");
  s.bind(1, std::string(to_string(to)))
      .bind(2, reason)
      .bind(3, backend_id.value_or(j->backend_id))
      .bind(4, exit_code.value_or(j->exit_code))
      .bind(5, now_seconds())
      .bind(6, id);
  s.step();
  if (j->state != to) {
    std::string msg = fmt::format("{} -> {}", to_string(j->state), to_string(to));
    if (backend_id) msg += " (id " + *backend_id + ")";
    if (!reason.empty()) msg += ": " + reason;
    Stmt(db_, "INSERT INTO events (time, run, job, message) VALUES (?, ?, ?, ?)")
        .bind(1, now_seconds())
        .bind(2, j->run)
        .bind(3, j->name)
        .bind(4, msg)
        .step();
  }
  tx.commit();
}

std::vector<JobRow> State::jobs(const std::string& run) {
  std::vector<JobRow> out;
  std::string sql = fmt::format("SELECT {} FROM jobs {} ORDER BY id", kJobColumns,
                                run.empty() ? "" : "WHERE run = ?");
  Stmt s(db_, sql.c_str());
  if (!run.empty()) s.bind(1, run);
  while (s.step()) out.push_back(read_job(s));
  return out;
}

std::optional<JobRow> State::job(int64_t id) {
  std::string sql = fmt::format("SELECT {} FROM jobs WHERE id = ?", kJobColumns);
  Stmt s(db_, sql.c_str());
  s.bind(1, id);
  if (s.step()) return read_job(s);
  return std::nullopt;
}

std::optional<JobRow> State::job_by_name(const std::string& name) {
  std::string sql = fmt::format("SELECT {} FROM jobs WHERE name = ?", kJobColumns);
  Stmt s(db_, sql.c_str());
  s.bind(1, name);
  if (s.step()) return read_job(s);
  return std::nullopt;
}

bool State::add_checkpoint(const std::string& run, int64_t step, const std::string& path) {
  Tx tx(*this);
  Stmt s(db_, "INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?)");
  s.bind(1, run).bind(2, step).bind(3, path).bind(4, now_seconds()).step();
  bool added = sqlite3_changes(db_) > 0;
  if (added) {
    Stmt(db_, "INSERT INTO events (time, run, job, message) VALUES (?, ?, '', ?)")
        .bind(1, now_seconds())
        .bind(2, run)
        .bind(3, fmt::format("checkpoint step {}", step))
        .step();
  }
  tx.commit();
  return added;
}

std::vector<std::pair<int64_t, std::string>> State::checkpoints(const std::string& run) {
  std::vector<std::pair<int64_t, std::string>> out;
  Stmt s(db_, "SELECT step, path FROM checkpoints WHERE run = ? ORDER BY step");
  s.bind(1, run);
  while (s.step()) out.emplace_back(s.i64(0), s.text(1));
  return out;
}

void State::set_evaluations(const std::string& run, int64_t step,
                            const std::vector<Evaluation>& rows) {
  Tx tx(*this);
  Stmt(db_, "DELETE FROM evaluations WHERE run = ? AND step = ?").bind(1, run).bind(2, step).step();
  Stmt(db_, "DELETE FROM absent_modalities WHERE run = ? AND step = ?")
      .bind(1, run)
      .bind(2, step)
      .step();
  for (const auto& e : rows) {
    if (!e.absent.empty()) {
      Stmt(db_, "INSERT INTO absent_modalities VALUES (?, ?, ?, ?)")
          .bind(1, run)
          .bind(2, step)
          .bind(3, e.modality)
          .bind(4, e.absent)
          .step();
      continue;
    }
    Stmt(db_, "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?)")
        .bind(1, run)
        .bind(2, step)
        .bind(3, e.modality)
        .bind(4, e.metric)
        .bind(5, e.value)
        .step();
  }
  tx.commit();
}

std::vector<Evaluation> State::evaluations(const std::string& run) {
  std::vector<Evaluation> out;
  // Metric rows and absent rows (metric "", the reason in the last column), in one order.
  std::string sql = std::string("SELECT run, step, modality, metric, value, '' FROM evaluations ") +
                    (run.empty() ? "" : "WHERE run = ?1 ") +
                    "UNION ALL SELECT run, step, modality, '', 0, reason FROM absent_modalities " +
                    (run.empty() ? "" : "WHERE run = ?1 ") + "ORDER BY 1, 2, 3, 4";
  Stmt s(db_, sql.c_str());
  if (!run.empty()) s.bind(1, run);
  while (s.step()) out.push_back({s.text(0), s.i64(1), s.text(2), s.text(3), s.real(4), s.text(5)});
  return out;
}

void State::event(const std::string& run, const std::string& job, const std::string& message) {
  Stmt(db_, "INSERT INTO events (time, run, job, message) VALUES (?, ?, ?, ?)")
      .bind(1, now_seconds())
      .bind(2, run)
      .bind(3, job)
      .bind(4, message)
      .step();
}

std::vector<Event> State::events(int64_t after_id, int limit) {
  std::vector<Event> out;
  Stmt s(db_,
         "SELECT id, time, run, job, message FROM events WHERE id > ? ORDER BY id DESC LIMIT ?");
  s.bind(1, after_id).bind(2, limit);
  while (s.step()) out.push_back({s.i64(0), s.real(1), s.text(2), s.text(3), s.text(4)});
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace m3ret::orchestrator
