#include "core/runtime.h"

#include <mpi.h>

#include <cstdlib>

#include <fmt/format.h>

#include "core/checked_communicator.h"
#include "core/error.h"
#include "core/mpi_communicator.h"

namespace m3ret {

namespace {
Runtime* g_runtime = nullptr;
}

Runtime& Runtime::init(int* argc, char*** argv) {
  if (g_runtime) return *g_runtime;
  // Read the launcher's environment before MPI_Init (a singleton init sets OMPI_* itself).
  std::string launcher = "single";
  if (std::getenv("SLURM_JOB_ID") && std::getenv("SLURM_PROCID")) {
    launcher = "slurm";
  } else if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") ||
             std::getenv("PMI_RANK")) {
    launcher = "mpi";
  }
  int already = 0;
  MPI_Initialized(&already);
  if (!already) {
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
      throw Error("MPI_Init_thread failed");
    }
    if (provided < MPI_THREAD_MULTIPLE) {
      throw Error(
          fmt::format("MPI provides thread level {} but m3ret needs MPI_THREAD_MULTIPLE ({})",
                      provided, MPI_THREAD_MULTIPLE));
    }
    std::atexit([] { Runtime::finalize(); });
  }
  auto* rt = new Runtime();
  MPI_Comm_rank(MPI_COMM_WORLD, &rt->rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &rt->world_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rt->rank_, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &rt->local_rank_);
  MPI_Comm_size(local, &rt->local_world_);
  MPI_Comm_free(&local);
  rt->launcher_ = launcher;
  rt->comm_ = checked_from_environment(std::make_unique<MpiCommunicator>(MPI_COMM_WORLD));
  g_runtime = rt;
  return *rt;
}

Runtime& Runtime::get() {
  if (!g_runtime) throw Error("m3ret::Runtime::get() called before Runtime::init()");
  return *g_runtime;
}

bool Runtime::initialized() { return g_runtime != nullptr; }

Communicator& Runtime::world_comm() { return *comm_; }

void Runtime::abort(int code) const {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void Runtime::finalize() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Finalize();
}

}  // namespace m3ret
