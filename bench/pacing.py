#!/usr/bin/env python3
"""Pacing and crash benchmarks against the strict sandbox (BENCHMARKS.md, "Pacing").

usage: bench/pacing.py [--no-build] [--sends N] [--kills N] [FIGURE...]

FIGURE is any of (default: all, in this order):
  rate         N sends at rate 25 against `sandbox --rate 25`: achieved rate, 429s,
               largest count in any 1-second window
  rate-loaded  the same with both cores busy (one `yes > /dev/null` per core)
  random429    the same with 10% random 429s (`--fail 429:0.1`, Retry-After: 1)
  latency      round trips of 1 s (`--latency 1000`), default concurrency
  kill         SIGKILL a run (rate 25, concurrency 25, `--latency 50`) a few seconds
               in, --kills times: unknown recipients vs what the sandbox received

Every figure comes from the sandbox's record (`--record`, one line per request with
its arrival `t_us`), never from the client's own report. Results go to stdout as a
Markdown table and to bench/out/pacing.json. Needs: cargo, python3, coreutils.
"""
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

from sending import BIN, ROOT, Sandbox, report, arg, build, campaign as write_campaign, fresh_state, per_second, run_env, say

OUT = os.path.join(ROOT, "bench", "out", "pacing")
BOT = "bench-bot"


def campaign(name, rows, rate=25, concurrency=None):
    """A V2 campaign over `rows` generated customers; no `concurrency` = the default."""
    extra = f"\nconcurrency: {concurrency}" if concurrency else ""
    return write_campaign(OUT, name, BOT, rows,
                          f"rate: {rate}{extra}\nretries: 10\nmax_failures: \"1000000\"")


def state_file(name):
    return fresh_state(os.path.join(OUT, f"{name}.db"))


def most_in_any_second(times):
    best, lo = 0, 0
    for hi in range(len(times)):
        while times[hi] - times[lo] >= 1_000_000:
            lo += 1
        best = max(best, hi - lo + 1)
    return best



def send_run(name, sends, sandbox_args, concurrency=None, load=False):
    """One whole run; the figures from the sandbox's record."""
    path = campaign(name, sends, concurrency=concurrency)
    sandbox = Sandbox(OUT, [BOT], *sandbox_args)
    hogs = []
    if load:
        # Both cores busy for the whole run, client and sandbox included.
        hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(os.cpu_count() or 2)]
    try:
        start = time.monotonic()
        subprocess.run([BIN, "-q", "run", path, "--state", state_file(name), "--new-state"], env=run_env(sandbox.url),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        wall = time.monotonic() - start
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        sandbox.stop()
    records = sandbox.records()
    every = sorted(r["t_us"] for r in records)
    accepted = sorted(r["t_us"] for r in records if r["accepted"])
    limiter_429 = sum(1 for r in records if r["status"] == 429 and r["fault"] is None)
    fault_429 = sum(1 for r in records if r["fault"] == "429")
    return {
        "sends": sends,
        "requests": len(records),
        "accepted": len(accepted),
        "requests_per_s": round(per_second(every), 2),
        "accepted_per_s": round(per_second(accepted), 2),
        "limiter_429": limiter_429,
        "fault_429": fault_429,
        "most_in_any_second": most_in_any_second(every),
        "wall_s": round(wall, 1),
    }


def kill_once(i, rng):
    name = "kill"
    path = campaign(name, 2000, concurrency=25)
    state = state_file(name)
    sandbox = Sandbox(OUT, [BOT], "--rate", "25", "--latency", "50")
    try:
        child = subprocess.Popen([BIN, "-q", "run", path, "--state", state, "--new-state"], env=run_env(sandbox.url),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = rng.uniform(2.0, 5.0)
        time.sleep(after)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        sandbox.stop()
    received = {r["recipient"]["customer_id"] for r in sandbox.records()}
    # The WAL the killed process left is read with the database.
    db = sqlite3.connect(state)
    attempted = {row[0] for row in db.execute("SELECT recipient FROM deliveries WHERE class = 'attempted'")}
    sent = db.execute("SELECT count(*) FROM deliveries WHERE class = 'sent'").fetchone()[0]
    db.close()
    never = attempted - received
    say(f"  kill {i + 1}: after {after:.1f} s, {sent} sent, {len(attempted)} unknown, "
        f"{len(never)} of them never received")
    return {"after_s": round(after, 1), "sent": sent, "unknown": len(attempted), "never_received": len(never)}


FIGURES = ["rate", "rate-loaded", "random429", "latency", "kill"]


def main():
    os.makedirs(OUT, exist_ok=True)
    # A project of its own: bench/out/ lies inside the repository, whose
    # smax.yaml would otherwise lend its defaults (concurrency 8) to these runs.
    with open(os.path.join(OUT, "smax.yaml"), "w", encoding="utf-8") as f:
        f.write(f'bots:\n  bench:\n    id: "{BOT}"\n    token_env: BENCH_TOKEN\n    api: v2\n')
    chosen = [a for a in sys.argv[1:] if a in FIGURES] or FIGURES
    sends = arg("--sends", 1500)
    kills = arg("--kills", 10)
    build()
    results = {}
    rows = []
    if "rate" in chosen:
        say(f"rate: {sends} sends at 25/s against sandbox --rate 25")
        r = results["rate"] = send_run("rate", sends, ["--rate", "25"])
        rows.append(("rate 25, strict sandbox, quiet machine", f"{r['accepted_per_s']}/s",
                     f"{r['limiter_429']} × 429, most in any second {r['most_in_any_second']}",
                     f"sandbox --rate 25; run ({sends} sends)"))
    if "rate-loaded" in chosen:
        say(f"rate-loaded: the same with {os.cpu_count()} × yes > /dev/null")
        r = results["rate-loaded"] = send_run("rate-loaded", sends, ["--rate", "25"], load=True)
        rows.append(("rate 25, strict sandbox, both cores busy", f"{r['accepted_per_s']}/s",
                     f"{r['limiter_429']} × 429, most in any second {r['most_in_any_second']}",
                     f"sandbox --rate 25; run ({sends} sends); yes > /dev/null × {os.cpu_count()}"))
    if "random429" in chosen:
        say(f"random429: {sends} sends, 10% random 429s")
        r = results["random429"] = send_run("random429", sends, ["--rate", "25", "--fail", "429:0.1", "--seed", "1"])
        rows.append(("rate 25, 10% random 429s (Retry-After: 1)", f"{r['requests_per_s']} requests/s",
                     f"{r['accepted_per_s']} sends/s; {r['fault_429']} random 429s, {r['limiter_429']} from the limiter",
                     f"sandbox --rate 25 --fail 429:0.1 --seed 1; run ({sends} sends)"))
    if "latency" in chosen:
        n = min(sends, 750)
        say(f"latency: {n} sends, 1 s round trips, default concurrency")
        r = results["latency"] = send_run("latency", n, ["--rate", "25", "--latency", "1000"])
        rows.append(("rate 25, 1 s round trips, default concurrency", f"{r['accepted_per_s']}/s",
                     f"{r['limiter_429']} × 429, most in any second {r['most_in_any_second']}",
                     f"sandbox --rate 25 --latency 1000; run ({n} sends)"))
    if "kill" in chosen:
        say(f"kill: {kills} × SIGKILL 2-5 s into a run at 25/s, concurrency 25, 50 ms latency")
        rng = random.Random(20261210)
        runs = results["kill"] = [kill_once(i, rng) for i in range(kills)]
        never = [k["never_received"] for k in runs]
        unknown = [k["unknown"] for k in runs]
        rows.append((f"SIGKILL × {kills}, rate 25, concurrency 25, --latency 50",
                     f"unknown never received: max {max(never)}, total {sum(never)}",
                     f"unknown per kill: {min(unknown)}–{max(unknown)} (total {sum(unknown)})",
                     "sandbox --rate 25 --latency 50; run; kill -9 after 2–5 s; state vs record"))
    report("pacing", results, rows)


if __name__ == "__main__":
    main()
