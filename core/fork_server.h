// A fork server: a process forked at the start of main(), while the process has one thread,
// that forks children on request (data/isolate.h runs untrusted decoding in them).
//
// A child forked from a process with several threads inherits every lock another thread held
// at the fork: a library's (ITK's reader factory), the C library's, or the allocator's
// (AddressSanitizer's is not fork-safe), and it waits on it forever. The server has one thread
// and never takes such locks between requests, so its children start clean.
//
// The server dies with the process that started it (and its children with it), ignores the
// signals a launcher sends to the whole process group (it ends with its parent), closes every
// descriptor but its socket and standard input/output/error, and is named "m3ret-forksrv" (so
// that `pgrep -x m3ret` and /proc/PID/comm see only m3ret itself).
#pragma once

#include <sys/types.h>

#include <string>

namespace m3ret::fork_server {

// Starts the server. Call it first in main(), before anything starts a thread (MPI, LibTorch,
// logging); later calls do nothing (but in a forked copy of the process, which starts its own). A process that cannot start it (no fork) works without
// one: spawn() then returns -1 and the caller forks itself.
void start();

// The server's pid while it serves this process, else 0 (never started, dead, or this is a
// forked copy of the process that started it: a copy must not talk to its parent's server).
pid_t pid();

// The body of a child: gets the descriptor that spawn() was given (the child's copy) and the
// bytes of `args`; must end the process (_exit), never return.
using Entry = void (*)(int fd, const std::string& args);

// Has the server fork a child that closes every descriptor but 0-2 and its copy of `fd`, dies
// with the server (which dies with this process) and calls entry(fd, args). Returns its pid; -1
// when there is no server (then the caller forks itself) or the server cannot fork (errno set).
// Thread-safe. The child is the server's: wait for it with wait(), never waitpid().
pid_t spawn(Entry entry, const std::string& args, int fd);

// Waits for child `pid` of spawn() to end and returns its wait status (as waitpid's), or -1
// when the server is gone (its children died with it). Thread-safe; blocks the server (and
// other threads' spawn and wait) until the child has ended: call it once the child has
// closed `fd` (its result is read) or been killed.
int wait(pid_t pid);

}  // namespace m3ret::fork_server
