#!/usr/bin/env python3
"""Deliver every message of a folder, one process per message, and time it.

Owns: the timed loop of the benchmark: for each *.eml of MSGDIR in name
order, `PROG -m ./procmailrc < msg` is spawned from each side's WORKDIR, as
an MTA runs its local delivery agent.  With several sides the deliveries
are interleaved message by message (the order of the sides alternating), so
that a change in the machine's background load hits both sides alike; the
time of each delivery (spawn to reap) is added to its side's total, and so
is the CPU time the child used (getrusage through wait4).
Never: changes the messages, or looks at what was delivered.

Usage: driver.py MSGDIR --side NAME PROG WORKDIR [--side ...] [--rc RCFILE]
Prints one line per side:
  `side=NAME seconds=S cpu=C n=N failed=F first_failure=...`
PROG `/bin/true` gets no arguments (the spawn-cost baseline).
Standard library only.
"""

import os
import sys
import time


def parse(argv):
    if len(argv) < 6 or argv[2] != "--side":
        sys.exit("usage: driver.py MSGDIR --side NAME PROG WORKDIR [--side ...] [--rc RCFILE]")
    msgdir, rest, sides, rc = argv[1], argv[2:], [], "./procmailrc"
    while rest:
        if rest[0] == "--side" and len(rest) >= 4:
            sides.append({"name": rest[1], "prog": rest[2], "dir": os.path.abspath(rest[3]),
                          "secs": 0.0, "cpu": 0.0, "failed": 0, "first": ""})
            rest = rest[4:]
        elif rest[0] == "--rc" and len(rest) >= 2:
            rc, rest = rest[1], rest[2:]
        else:
            sys.exit("driver: bad argument %r" % rest[0])
    return msgdir, sides, rc


def main():
    msgdir, sides, rc = parse(sys.argv)
    names = sorted(n for n in os.listdir(msgdir) if n.endswith(".eml"))
    if not names:
        sys.exit("driver: no *.eml in %s" % msgdir)
    paths = [os.path.join(os.path.abspath(msgdir), n) for n in names]
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LOGNAME", "USER", "TZ")
           if k in os.environ}
    devnull = os.open(os.devnull, os.O_WRONLY)
    for s in sides:
        s["argv"] = [s["prog"]] if os.path.basename(s["prog"]) == "true" else \
            [s["prog"], "-m", rc]
        s["err"] = os.open(os.path.join(s["dir"], "driver-stderr.log"),
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for i, path in enumerate(paths):
        order = sides if i % 2 == 0 else sides[::-1]
        for s in order:
            msg = os.open(path, os.O_RDONLY)
            os.chdir(s["dir"])
            t0 = time.perf_counter()
            pid = os.posix_spawn(s["prog"], s["argv"], env, file_actions=[
                (os.POSIX_SPAWN_DUP2, msg, 0),
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, s["err"], 2)])
            _, status, ru = os.wait4(pid, 0)
            s["secs"] += time.perf_counter() - t0
            s["cpu"] += ru.ru_utime + ru.ru_stime
            os.close(msg)
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                s["failed"] += 1
                if not s["first"]:
                    s["first"] = "%s:exit=%d" % (os.path.basename(path), code)
    for s in sides:
        print("side=%s seconds=%.3f cpu=%.3f n=%d failed=%d first_failure=%s"
              % (s["name"], s["secs"], s["cpu"], len(paths), s["failed"], s["first"] or "-"))


if __name__ == "__main__":
    main()
