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
                 [--zygote NAME DELIVER WORKDIR]
Prints one line per side:
  `side=NAME seconds=S cpu=C n=N failed=F first_failure=...`
PROG `/bin/true` gets no arguments (the spawn-cost baseline).
A `--zygote` side is the way postroom's queue runner runs deliver: one
`DELIVER --postroom-zygote` started (in WORKDIR) before the loop, and for
each message a request on its socket; it forks a child that runs
`deliver -m RCFILE` with the message on stdin.  Its time is request to
answer, its CPU the children's (the zygote's cutime + cstime).
Standard library only.
"""

import os
import socket
import struct
import subprocess
import sys
import time


class Zygote:
    """A `deliver --postroom-zygote` and its socket (src/deliver/zygote.rs)."""

    def __init__(self, deliver, workdir, env):
        self.sock, theirs = socket.socketpair()
        self.proc = subprocess.Popen([deliver, "--postroom-zygote"], stdin=theirs,
                                     stdout=subprocess.DEVNULL, cwd=workdir, env=env)
        theirs.close()
        if self.read(4) != b"PRZ1":
            sys.exit("driver: %s did not greet as a zygote" % deliver)

    def read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                sys.exit("driver: the zygote went away")
            out += chunk
        return out

    def run(self, argv, env, message):
        def strings(items):
            return struct.pack("<I", len(items)) + b"".join(
                struct.pack("<I", len(x)) + x for x in items)
        req = (b"PRZ1" + strings([a.encode() for a in argv]) +
               strings([("%s=%s" % kv).encode() for kv in env.items()]) +
               struct.pack("<IIQ", 0, 0, len(message)) + message)
        self.sock.sendall(req)
        if self.read(1) != b"P":
            sys.exit("driver: the zygote could not fork")
        self.read(4)
        if self.read(1) != b"S":
            sys.exit("driver: bad answer from the zygote")
        code, n = struct.unpack("<iI", self.read(8))
        self.read(n)
        return code

    def children_cpu(self):
        fields = open("/proc/%d/stat" % self.proc.pid).read().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")

    def close(self):
        self.sock.close()
        self.proc.wait()


def parse(argv):
    if len(argv) < 6 or argv[2] != "--side":
        sys.exit("usage: driver.py MSGDIR --side NAME PROG WORKDIR [--side ...] [--rc RCFILE]")
    msgdir, rest, sides, rc = argv[1], argv[2:], [], "./procmailrc"
    while rest:
        if rest[0] == "--side" and len(rest) >= 4:
            sides.append({"name": rest[1], "prog": rest[2], "dir": os.path.abspath(rest[3]),
                          "secs": 0.0, "cpu": 0.0, "failed": 0, "first": ""})
            rest = rest[4:]
        elif rest[0] == "--zygote" and len(rest) >= 4:
            sides.append({"name": rest[1], "prog": rest[2], "dir": os.path.abspath(rest[3]),
                          "secs": 0.0, "cpu": 0.0, "failed": 0, "first": "", "zygote": True})
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
        if s.get("zygote"):
            s["z"] = Zygote(s["prog"], s["dir"], env)
    for i, path in enumerate(paths):
        order = sides if i % 2 == 0 else sides[::-1]
        for s in order:
            if s.get("zygote"):
                data = open(path, "rb").read()
                t0 = time.perf_counter()
                code = s["z"].run(s["argv"], env, data)
                s["secs"] += time.perf_counter() - t0
                if code != 0:
                    s["failed"] += 1
                    if not s["first"]:
                        s["first"] = "%s:exit=%d" % (os.path.basename(path), code)
                continue
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
        if s.get("zygote"):
            s["cpu"] = s["z"].children_cpu()
            s["z"].close()
    for s in sides:
        print("side=%s seconds=%.3f cpu=%.3f n=%d failed=%d first_failure=%s"
              % (s["name"], s["secs"], s["cpu"], len(paths), s["failed"], s["first"] or "-"))


if __name__ == "__main__":
    main()
