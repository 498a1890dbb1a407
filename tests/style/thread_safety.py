#!/usr/bin/env python3
"""Clang's thread-safety analysis over the translation units that use core/mutex.h.

Usage: thread_safety.py BUILD_DIR [CLANG]

Reads BUILD_DIR/compile_commands.json (the GCC build's), picks the library sources (not
tests or benchmarks) that include core/mutex.h or an annotated header of ours, themselves or
through their own header, and compiles each with clang++
-fsyntax-only -Wthread-safety -Werror=thread-safety and the same defines and include
paths. Exit 0 when the analysis finds nothing, 1 with clang's report otherwise, 77 (a
skip for CTest) when clang++ or the compile database is missing.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def read_text(path):
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    return text


def uses_mutex(source, root):
    """True when `source` or its own header (same stem) includes core/mutex.h or a header
    of ours with thread-safety annotations (e.g. core/ordered_pool.h): the files that
    define or instantiate what the annotations guard."""
    for path in (source, os.path.splitext(source)[0] + ".h"):
        text = read_text(path)
        if text is None:
            continue
        for inc in INCLUDE.findall(text):
            if inc == "core/mutex.h" or "M3RET_GUARDED_BY" in (read_text(os.path.join(root, inc)) or ""):
                return True
    return False


def clang_command(entry, clang):
    """The entry's compile command as a clang++ syntax-only thread-safety check."""
    argv = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    out = [clang]
    skip = False
    for i, a in enumerate(argv[1:], start=1):
        if skip:
            skip = False
            continue
        if a in ("-o", "-include"):
            # -include: CMake's precompiled-header prologue (GCC's .gch); clang reads the
            # sources' own includes instead.
            skip = True
            continue
        if a == "-c" or a.startswith("-W") or a.startswith("-O"):
            continue
        out.append(a)
    return out + CHECK_FLAGS


# Only the analysis: other warnings of clang's are not this check's business.
CHECK_FLAGS = ["-fsyntax-only", "-Wno-everything", "-Wthread-safety", "-Werror=thread-safety"]

# The check must be able to fail: a guarded member read without its mutex is reported,
# the same read under a MutexLock is not.
SELF_TEST = """#include "core/mutex.h"
struct Counter {
  int get() { %s return n_; }
  m3ret::Mutex mu_;
  int n_ M3RET_GUARDED_BY(mu_) = 0;
};
int main() { return Counter().get(); }
"""


def self_test(clang, root):
    for lock, must_fail in (("", True), ("m3ret::MutexLock l(mu_);", False)):
        r = subprocess.run([clang, "-std=c++17", "-I", root, "-x", "c++", "-"] + CHECK_FLAGS,
                           input=SELF_TEST % lock, capture_output=True, text=True)
        found = "requires holding mutex" in r.stderr
        if (r.returncode != 0) != must_fail or found != must_fail:
            print("thread_safety: the self-test failed: a read " +
                  ("without" if must_fail else "under") + " the lock was " +
                  ("not " if must_fail else "") + "reported:\n" + r.stderr)
            return False
    return True


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    build = sys.argv[1]
    clang = sys.argv[2] if len(sys.argv) > 2 else "clang++"
    db_path = os.path.join(build, "compile_commands.json")
    if not shutil.which(clang):
        print(f"thread_safety: {clang} not found (bash setup.sh installs clang)")
        return 77
    if not os.path.exists(db_path):
        print(f"thread_safety: {db_path} not found (configure the build first)")
        return 77
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = os.path.dirname(root)
    if not self_test(clang, root):
        return 1
    entries = {}
    for e in json.load(open(db_path)):
        f = os.path.normpath(os.path.join(e["directory"], e["file"]))
        rel = os.path.relpath(f, root)
        if rel.startswith(("..", "tests" + os.sep, "bench" + os.sep)):
            continue  # the library code, where the guarded state lives
        if uses_mutex(f, root):
            entries.setdefault(f, e)  # one configuration per source is enough
    if not entries:
        print("thread_safety: no translation unit includes core/mutex.h")
        return 1

    def check(item):
        f, e = item
        r = subprocess.run(clang_command(e, clang), cwd=e["directory"], capture_output=True,
                           text=True)
        return f, r.returncode, r.stdout + r.stderr

    failed = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f, rc, out in pool.map(check, sorted(entries.items())):
            print(f"{'ok  ' if rc == 0 else 'FAIL'} {os.path.relpath(f, root)}")
            if rc != 0:
                failed += 1
                print(out)
    print(f"thread_safety: {len(entries)} translation units, {failed} with findings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
