// The MPI runtime: one per process.
//
// Initialised with MPI_THREAD_MULTIPLE (a communication thread reduces
// gradients while backward runs). Runs the same as a single process when the
// binary is started without mpirun/srun (Open MPI's singleton mode).
//
// rank/world come from MPI_COMM_WORLD; local_rank/local_world from a
// shared-memory split of it (the ranks on this node), which is what chooses the
// GPU. Thread-safe after construction (all members are fixed).
#pragma once

#include <memory>
#include <string>

namespace m3ret {

class Communicator;

class Runtime {
 public:
  // Initialises MPI (once per process). Throws m3ret::Error if MPI cannot
  // provide the needed thread level.
  static Runtime& init(int* argc, char*** argv);
  // The initialised runtime; throws if init() was not called.
  static Runtime& get();
  static bool initialized();

  int rank() const { return rank_; }
  int world() const { return world_; }
  int local_rank() const { return local_rank_; }
  int local_world() const { return local_world_; }
  bool is_root() const { return rank_ == 0; }
  // "slurm" when SLURM_JOB_ID is set, "mpi" when launched by mpirun, else "single".
  const std::string& launcher() const { return launcher_; }

  // The communicator over all ranks (MPI_COMM_WORLD).
  Communicator& world_comm();

  // Ends the whole job (all ranks) with `code`; use when one rank cannot go on
  // and the others would otherwise wait forever.
  [[noreturn]] void abort(int code) const;

  // Finalises MPI. Called at exit; safe to call more than once.
  static void finalize();

 private:
  Runtime() = default;
  int rank_ = 0, world_ = 1, local_rank_ = 0, local_world_ = 1;
  std::string launcher_ = "single";
  std::unique_ptr<Communicator> comm_;
};

}  // namespace m3ret
