// One `m3ret orchestrate` session: everything the verb does after parsing its
// flags. It owns the sweep's state database (an exclusive lock beside it),
// refuses a database that belongs to another sweep or backend, writes the
// status server's token and port files into the work folder and runs the
// orchestrator until the sweep ends or `stop` is set.
#pragma once

#include <atomic>
#include <filesystem>
#include <string>

#include "launcher/orchestrator/state.h"
#include "launcher/orchestrator/sweep.h"

namespace m3ret::orchestrator {

struct SessionOptions {
  std::filesystem::path sweep;       // the sweep file
  std::string backend = "local";     // "local" | "slurm"
  std::filesystem::path state;       // state database; "" = WORK_DIR/state.db
  std::filesystem::path job_binary;  // the m3ret jobs run; "" = this binary
  std::string token;                 // for cancel/retry; "" = random
  int port = 0;                      // status server on 127.0.0.1 (0 = any free port)
  double poll = 2.0;                 // seconds between polls of the backend
  bool server = true;                // start the status server
  bool retry_failed = false;         // make every failed run pending again first
  ValidateFn validate;               // checks each run's overrides (load_sweep)
};

// One orchestrator per state database: an flock on STATE.lock (holding the
// holder's pid), held for the life of this object and released by the kernel
// however the process ends (kill -9 included), so a restart right after a
// crash proceeds and a second orchestrator on the same sweep is refused
// instead of submitting twice. Throws m3ret::Error naming the holder's pid.
class StateLock {
 public:
  explicit StateLock(const std::filesystem::path& db);
  ~StateLock();
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;

 private:
  int fd_ = -1;
};

// Throws m3ret::Error when `state` was made for another sweep file or backend.
void check_ownership(State& state, const std::filesystem::path& db, const Sweep& sweep,
                     const std::string& backend);

// WORK_DIR/token (mode 0600) and WORK_DIR/port, read by clients of the status server.
void write_token_file(const std::filesystem::path& work_dir, const std::string& token);
void write_port_file(const std::filesystem::path& work_dir, int port);

// Runs the session. Returns normally when every run succeeded or `stop` was
// set (jobs keep running; a new session continues); throws m3ret::Error
// naming the runs that did not succeed, and for bad options or a database
// owned by another orchestrator, sweep or backend.
void run_session(const SessionOptions& opts, const std::atomic<bool>& stop);

}  // namespace m3ret::orchestrator
