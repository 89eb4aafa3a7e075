#!/usr/bin/env python3
"""Deliver every message of a folder, one process per message, and time it.

Owns: the timed loop of the benchmark, `PROG -m ./procmailrc < msg` run
from WORKDIR for each *.eml of MSGDIR in name order, as an MTA runs its
local delivery agent.  Python's subprocess is the fork/exec cost for both
sides alike; `--baseline` times the same loop with /bin/true to show it.
Never: changes the messages, or looks at what was delivered.

Usage: driver.py PROG WORKDIR MSGDIR [RCFILE]   (standard library only)
Prints one line: `seconds=S n=N failed=F first_failure=...`.
"""

import os
import subprocess
import sys
import time


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: driver.py PROG WORKDIR MSGDIR [RCFILE]")
    prog, workdir, msgdir = sys.argv[1:4]
    rc = sys.argv[4] if len(sys.argv) > 4 else "./procmailrc"
    names = sorted(n for n in os.listdir(msgdir) if n.endswith(".eml"))
    if not names:
        sys.exit("driver: no *.eml in %s" % msgdir)
    paths = [os.path.join(os.path.abspath(msgdir), n) for n in names]
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LOGNAME", "USER", "TZ")
           if k in os.environ}
    argv = [prog] if os.path.basename(prog) == "true" else [prog, "-m", rc]
    failed, first = 0, ""
    with open(os.path.join(workdir, "driver-stderr.log"), "ab") as err:
        t0 = time.perf_counter()
        for path in paths:
            with open(path, "rb") as msg:
                code = subprocess.call(argv, stdin=msg, stdout=subprocess.DEVNULL,
                                       stderr=err, cwd=workdir, env=env)
            if code != 0:
                failed += 1
                if not first:
                    first = "%s:exit=%d" % (os.path.basename(path), code)
        secs = time.perf_counter() - t0
    print("seconds=%.3f n=%d failed=%d first_failure=%s" % (secs, len(paths), failed,
                                                           first or "-"))


if __name__ == "__main__":
    main()
