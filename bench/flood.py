#!/usr/bin/env python3
"""A flood of idle connections against the sandbox (BENCHMARKS.md, "Sandbox under a flood").

usage: bench/flood.py [--no-build] [--connections N] [--idle-timeout DURATION]

Opens N connections (default 10,000) that never send a byte, then checks that
  - the sandbox still answers a real request while they are open (the cap of 1,024
    open connections keeps room: later connections wait in the kernel's backlog);
  - its resident memory (VmRSS from /proc) during the flood, after the idle timeout
    has closed what it accepted, and after the client has closed everything;
  - how many of the flood's connections the sandbox closed on its own.
Results go to stdout as a Markdown table and to bench/out/flood.json. Linux only.
"""
import os
import resource
import selectors
import socket
import sys
import time
import urllib.request

from sending import BIN, ROOT, Sandbox, arg, build, report, say

OUT = os.path.join(ROOT, "bench", "out", "flood")


def rss_kb(pid):
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def answers(url):
    """Whether the sandbox answers GET / (any HTTP status) within 10 s."""
    try:
        urllib.request.urlopen(url + "/", timeout=10)
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def closed_by_server(socks, wait):
    """How many of `socks` the server has closed (EOF or reset) within `wait` seconds."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    closed = set()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and len(closed) < len(socks):
        for key, _ in sel.select(timeout=0.5):
            try:
                if key.fileobj.recv(1) == b"":
                    closed.add(key.fileobj)
            except OSError:
                closed.add(key.fileobj)
            sel.unregister(key.fileobj)
    sel.close()
    return len(closed)


def main():
    n = int(arg("--connections", "10000"))
    idle = arg("--idle-timeout", "5s")
    idle_s = float(idle.rstrip("s"))
    build()
    os.makedirs(OUT, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
    sandbox = Sandbox(OUT, ["bench-bot"], "--idle-timeout", idle)
    pid = sandbox.proc.pid
    host, port = sandbox.url.split("//")[1].split(":")
    before = rss_kb(pid)
    say(f"sandbox {sandbox.url}: {before} KB before; opening {n} idle connections")
    socks, refused = [], 0
    for _ in range(n):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((host, int(port)))
            socks.append(s)
        except OSError:
            # Past the kernel's accept backlog a connection is not taken.
            s.close()
            refused += 1
    say(f"{len(socks)} connected, {refused} not taken")
    time.sleep(1)
    during = rss_kb(pid)
    served = answers(sandbox.url)
    say(f"during: {during} KB, a request answered: {served}")
    closed = closed_by_server(socks, idle_s * 3 + 5)
    after_idle = rss_kb(pid)
    for s in socks:
        s.close()
    time.sleep(idle_s + 2)
    after_all = rss_kb(pid)
    served_after = answers(sandbox.url)
    sandbox.stop()
    results = {
        "connections": n, "connected": len(socks), "not_taken": refused, "idle_timeout": idle, "rss_before_kb": before,
        "rss_during_kb": during, "rss_after_idle_kb": after_idle,
        "rss_after_close_kb": after_all, "closed_by_sandbox": closed,
        "answered_during": served, "answered_after": served_after,
    }
    cmd = f"bench/flood.py --connections {n} --idle-timeout {idle}"
    report("flood", results, [
        ("resident memory before / during / after the idle timeout / after all closed",
         f"{before / 1024:.1f} / {during / 1024:.1f} / {after_idle / 1024:.1f} / {after_all / 1024:.1f} MB",
         f"{n} idle connections", cmd),
        ("flood connections the sandbox closed itself", f"{closed} of {len(socks)} connected ({refused} not taken)",
         f"idle timeout {idle}, cap 1,024 open", cmd),
        ("a real request answered during / after the flood", f"{served} / {served_after}", "", cmd),
    ])


if __name__ == "__main__":
    main()
