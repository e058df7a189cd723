"""Run a command and report its wall time and peak RSS, measured from a small launcher process.

    python -S benchmarks/_measure.py RESULT.json -- CMD [ARGS...]

Why a launcher: on Linux a child's ru_maxrss starts from the address space it was forked from (the
exec keeps the high-water mark of the pre-exec image), so a child started directly by a benchmark
script that holds a model in memory would report at least the script's own peak. Started from this
stdlib-only process (~10 MB), the command's ru_maxrss (os.wait4, kB) is its own to within that floor.
Exits with the command's exit code; RESULT.json holds rc, wall_s, peak_rss_kb, user_s, sys_s.
"""

import json
import os
import subprocess
import sys
import time


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print("usage: _measure.py RESULT.json -- CMD [ARGS...]", file=sys.stderr)
        return 2
    result_path, cmd = sys.argv[1], sys.argv[3:]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    result = {
        "rc": rc,
        "wall_s": wall,
        "peak_rss_kb": usage.ru_maxrss,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
    }
    with open(result_path, "w") as f:
        json.dump(result, f)
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main())
