#!/usr/bin/env python3
"""bench/startup.py -- the fixed cost of starting one program.

Owns: spawning each program given (with `-v`, output to /dev/null) N times,
interleaved round-robin so that load changes hit every program alike, and
printing the median and the 10th percentile of spawn-to-reap wall time, and
the difference to the first program (use /bin/true as the baseline).
Never: writes any file.

Usage: bench/startup.py [-n N] PROG...   e.g.
  bench/startup.py /bin/true /usr/bin/procmail target/release/deliver
"""
import os, statistics, sys, time

def main():
    args = sys.argv[1:]
    n = 2000
    if args[:1] == ["-n"]:
        n, args = int(args[1]), args[2:]
    if not args:
        sys.exit(__doc__)
    null = os.open(os.devnull, os.O_WRONLY)
    acts = [(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]
    times = {p: [] for p in args}
    for _ in range(n):
        for p in args:
            t0 = time.perf_counter_ns()
            pid = os.posix_spawn(p, [p, "-v"], os.environ, file_actions=acts)
            os.waitpid(pid, 0)
            times[p].append(time.perf_counter_ns() - t0)
    base = statistics.median(times[args[0]])
    print("%-32s %10s %10s %12s" % ("program", "median", "p10", "over first"))
    for p in args:
        t = sorted(times[p])
        med = statistics.median(t)
        print("%-32s %7.1f us %7.1f us %+9.1f us" % (p, med / 1e3, t[len(t) // 10] / 1e3, (med - base) / 1e3))

main()
