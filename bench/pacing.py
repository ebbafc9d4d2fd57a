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
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out", "pacing")
BIN = os.path.join(ROOT, "target", "release", "smax-campaign")
TOKEN = "bench-token"
BOT = "bench-bot"


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def arg(name, default):
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


def audience(rows):
    path = os.path.join(OUT, f"audience-{rows}.csv")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gen.py"), OUT, str(rows)],
                       check=True, stdout=subprocess.DEVNULL)
    return path


def campaign(name, rows, rate=25, concurrency=None):
    """A V2 campaign over `rows` generated customers; no `concurrency` = the default."""
    source = os.path.basename(audience(rows))
    extra = f"\n  concurrency: {concurrency}" if concurrency else ""
    path = os.path.join(OUT, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"""version: 1
name: {name}
bot: {{ id: "{BOT}", token_env: BENCH_TOKEN, api: v2 }}
audience:
  from:
    - csv: {source}
  key: "{{{{ customer_id }}}}"
recipient:
  customer_id: "{{{{ customer_id }}}}"
message:
  tag: ACCOUNT_UPDATE
  text: "Chào {{{{ first_name }}}}, bạn có {{{{ points }}}} điểm."
delivery:
  rate: {rate}{extra}
  retries: 10
  max_failures: "1000000"
""")
    return path


class Sandbox:
    def __init__(self, *extra):
        self.record = os.path.join(OUT, "record.jsonl")
        self.args = [BIN, "sandbox", "--listen", "127.0.0.1:0", "--bot", f"{BOT}={TOKEN}",
                     "--record", self.record, *extra]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.url = self.proc.stdout.readline().decode().strip().split(" ")[-1]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()

    def records(self):
        with open(self.record, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def run_env(url):
    return dict(os.environ, BENCH_TOKEN=TOKEN, SMAX_API_URL=url)


def state_file(name):
    path = os.path.join(OUT, f"{name}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path


def most_in_any_second(times):
    best, lo = 0, 0
    for hi in range(len(times)):
        while times[hi] - times[lo] >= 1_000_000:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def per_second(times):
    return (len(times) - 1) / ((times[-1] - times[0]) / 1e6) if len(times) > 1 else 0.0


def send_run(name, sends, sandbox_args, concurrency=None, load=False):
    """One whole run; the figures from the sandbox's record."""
    path = campaign(name, sends, concurrency=concurrency)
    sandbox = Sandbox(*sandbox_args)
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
    sandbox = Sandbox("--rate", "25", "--latency", "50")
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
    if "--no-build" not in sys.argv:
        say("building (release)")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
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
    # Figures measured by earlier invocations are kept (one figure per key).
    saved = os.path.join(ROOT, "bench", "out", "pacing.json")
    if os.path.exists(saved):
        with open(saved, encoding="utf-8") as f:
            results = {**json.load(f), **results}
    with open(saved, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    print("| what | figure | detail | command |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r[:3]) + f" | `{r[3]}` |")


if __name__ == "__main__":
    main()
