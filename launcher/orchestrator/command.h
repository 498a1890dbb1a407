// The orchestrator's names for the subprocess module (launcher/process.h,
// library m3ret_process): short external commands (sbatch, squeue, scontrol,
// scancel) run with their output captured.
#pragma once

#include "launcher/process.h"

namespace m3ret::orchestrator {

using launcher::clean_environment;
using launcher::CommandResult;
using launcher::run_capture;

}  // namespace m3ret::orchestrator
