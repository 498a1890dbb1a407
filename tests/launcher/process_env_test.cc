// What a child process's environment keeps (launcher/process.h): no MPI
// launcher variables, except the Open MPI parameters a user or site set before
// m3ret started, and none of those when m3ret itself is an MPI rank.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "launcher/process.h"

namespace m3ret::launcher {
namespace {

using Env = std::vector<std::string>;

TEST(ProcessEnvironment, ChildrenKeepTheUsersOpenMpiParametersButNoLauncherVariables) {
  const Env startup = {"PATH=/usr/bin", "OMPI_MCA_btl_tcp_if_include=10.213.0.0/24",
                       "OMPI_MCA_oob_tcp_if_include=10.213.0.0/24", "HOME=/root"};
  // A singleton MPI_Init added its own variables, one of them an MCA one, and
  // changed nothing else.
  Env current = startup;
  current.insert(current.end(), {"OMPI_MCA_ess=singleton", "OMPI_COMM_WORLD_SIZE=1",
                                 "PMIX_NAMESPACE=x", "PMI_FD=3", "M3RET_X=1"});
  EXPECT_EQ(child_environment(current, startup),
            (Env{"PATH=/usr/bin", "OMPI_MCA_btl_tcp_if_include=10.213.0.0/24",
                 "OMPI_MCA_oob_tcp_if_include=10.213.0.0/24", "HOME=/root", "M3RET_X=1"}));
  // A parameter whose value changed since start is not the user's any more.
  current[1] = "OMPI_MCA_btl_tcp_if_include=lo";
  EXPECT_EQ(child_environment(current, startup).size(), 4u);
}

TEST(ProcessEnvironment, AnMpiRanksChildrenGetNoOpenMpiVariablesAtAll) {
  for (const char* marker : {"OMPI_COMM_WORLD_SIZE=2", "PMIX_RANK=0", "PMI_RANK=1"}) {
    const Env startup = {"PATH=/usr/bin", "OMPI_MCA_orte_hnp_uri=123", marker};
    EXPECT_EQ(child_environment(startup, startup), (Env{"PATH=/usr/bin"})) << marker;
  }
}

}  // namespace
}  // namespace m3ret::launcher
