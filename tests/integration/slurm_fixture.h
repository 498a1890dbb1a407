// A one-node Slurm for a test: tests/integration/slurm_cluster.sh starts
// munged, slurmctld and slurmd under a temp dir in SetUp (SLURM_CONF points
// the clients at it) and stops them in TearDown. Skips when Debian's
// slurm-wlm, munge or Open MPI's mpirun is missing. One cluster at a time on
// the machine (an flock held from SetUp to TearDown), so that tests run in
// parallel by `ctest -j` never share ports or compete for the node.
#pragma once

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "launcher/process.h"
#include "test_util.h"

namespace m3ret::testing {

inline bool have_program(const std::string& prog) {
  return launcher::run_capture({"sh", "-c", "command -v " + prog}).status == 0;
}

class SlurmCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"munged", "slurmctld", "slurmd", "sbatch", "mpirun"}) {
      if (!have_program(p))
        GTEST_SKIP() << p << " is not installed (setup.sh installs slurm-wlm and munge)";
    }
    lock_fd_ = ::open("/tmp/m3ret-test-slurm-cluster.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    ASSERT_GE(lock_fd_, 0) << "cannot open /tmp/m3ret-test-slurm-cluster.lock";
    ASSERT_EQ(flock(lock_fd_, LOCK_EX), 0) << "cannot lock /tmp/m3ret-test-slurm-cluster.lock";
    dir_ = std::make_unique<TempDir>("slurm");
    script_ = (source_dir() / "tests/integration/slurm_cluster.sh").string();
    auto r = launcher::run_capture({script_, "start", (dir_->path() / "cluster").string()});
    started_ = true;
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    setenv("SLURM_CONF", (dir_->path() / "cluster/slurm.conf").c_str(), 1);
  }
  void TearDown() override {
    if (started_) {
      launcher::run_capture(
          {"scancel", "--user=" + std::string(getenv("USER") ? getenv("USER") : "root")});
      launcher::run_capture({script_, "stop", (dir_->path() / "cluster").string()});
      unsetenv("SLURM_CONF");
    }
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
  }
  std::unique_ptr<TempDir> dir_;
  std::string script_;
  bool started_ = false;
  int lock_fd_ = -1;
};

}  // namespace m3ret::testing
