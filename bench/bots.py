#!/usr/bin/env python3
"""Many bots in one process (BENCHMARKS.md, "Many bots at once").

usage: bench/bots.py [--no-build] [FIGURE...]

FIGURE is any of (default: all, in this order):
  one      1 bot × 250 recipients at rate 25: the reference time
  four     4 bots × 250 recipients at rate 25 in one `run a b c d`: wall time, ratio to `one`
  shared   2 campaigns × 250 for ONE bot in one `run` (rates 25 and 20): exit code,
           the bot's achieved rate (the lower rate is the bot's budget)
  hundred  100 bots × 100 recipients at rate 25 in one `run`: slowest bot's rate, peak RSS

Rates come from the sandbox's record (`--record`: one line per request with its arrival
`t_us` and bot), peak RSS from wait4 of the `run` process. The sandbox enforces 25/s per
bot (`--rate 25`): a 429 from its limiter would show a bot going faster than allowed.
Results go to stdout as a Markdown table and to bench/out/bots.json.
"""
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out", "bots")
BIN = os.path.join(ROOT, "target", "release", "smax-campaign")
TOKEN = "bench-token"


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def audience(rows):
    path = os.path.join(OUT, f"audience-{rows}.csv")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gen.py"), OUT, str(rows)],
                       check=True, stdout=subprocess.DEVNULL)
    return os.path.basename(path)


def campaign(name, bot, rows, rate=25):
    path = os.path.join(OUT, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"""version: 1
name: {name}
bot: {{ id: "{bot}", token_env: BENCH_TOKEN, api: v2 }}
audience:
  from:
    - csv: {audience(rows)}
  key: "{{{{ customer_id }}}}"
recipient:
  customer_id: "{{{{ customer_id }}}}"
message:
  tag: ACCOUNT_UPDATE
  text: "Chào {{{{ first_name }}}}, bạn có {{{{ points }}}} điểm."
delivery:
  rate: {rate}
  retries: 10
""")
    return path


class Sandbox:
    def __init__(self, bots):
        self.record = os.path.join(OUT, "record.jsonl")
        args = [BIN, "sandbox", "--listen", "127.0.0.1:0", "--rate", "25", "--record", self.record]
        for bot in bots:
            args += ["--bot", f"{bot}={TOKEN}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.url = self.proc.stdout.readline().decode().strip().split(" ")[-1]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()

    def records(self):
        with open(self.record, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def per_second(times):
    times = sorted(times)
    return (len(times) - 1) / ((times[-1] - times[0]) / 1e6) if len(times) > 1 else 0.0


def run(campaigns, bots):
    """One `run` of every campaign in one process, against a sandbox that knows `bots`."""
    state = os.path.join(OUT, "state.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(state + suffix):
            os.remove(state + suffix)
    sandbox = Sandbox(bots)
    try:
        env = dict(os.environ, BENCH_TOKEN=TOKEN, SMAX_API_URL=sandbox.url)
        start = time.monotonic()
        proc = subprocess.Popen([BIN, "-q", "run", *campaigns, "--state", state, "--new-state"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
    finally:
        sandbox.stop()
    records = sandbox.records()
    by_bot = {}
    for r in records:
        by_bot.setdefault(r["bot"], []).append(r)
    rates = {bot: per_second([r["t_us"] for r in rs if r["accepted"]]) for bot, rs in by_bot.items()}
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024.0, 1),
        "requests": len(records),
        "accepted": sum(1 for r in records if r["accepted"]),
        "limiter_429": sum(1 for r in records if r["status"] == 429 and r["fault"] is None),
        "slowest_bot_per_s": round(min(rates.values()), 2) if rates else 0.0,
        "fastest_bot_per_s": round(max(rates.values()), 2) if rates else 0.0,
    }


FIGURES = ["one", "four", "shared", "hundred"]


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "smax.yaml"), "w", encoding="utf-8") as f:
        f.write("state: state.db\n")
    chosen = [a for a in sys.argv[1:] if a in FIGURES] or FIGURES
    if "--no-build" not in sys.argv:
        say("building (release)")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    results, rows = {}, []
    if "one" in chosen or "four" in chosen:
        say("one: 1 bot × 250 at rate 25")
        results["one"] = run([campaign("one", "bot-0", 250)], ["bot-0"])
    if "four" in chosen:
        say("four: 4 bots × 250 at rate 25, one process")
        bots = [f"bot-{i}" for i in range(4)]
        r = results["four"] = run([campaign(f"four-{i}", b, 250) for i, b in enumerate(bots)], bots)
        ratio = r["wall_s"] / results["one"]["wall_s"]
        r["ratio_to_one"] = round(ratio, 2)
        rows.append(("4 bots × 250 at 25/s, one `run`", f"{r['wall_s']} s ({ratio:.2f}× one bot's {results['one']['wall_s']} s)",
                     f"slowest bot {r['slowest_bot_per_s']}/s, {r['limiter_429']} × 429, exit {r['exit']}",
                     "bench/bots.py one four"))
    if "shared" in chosen:
        say("shared: 2 campaigns × 250 for one bot, rates 25 and 20")
        r = results["shared"] = run([campaign("shared-a", "bot-0", 250, 25), campaign("shared-b", "bot-0", 250, 20)],
                                    ["bot-0"])
        rows.append(("2 campaigns, 1 bot (rates 25, 20), one `run`", f"exit {r['exit']}, {r['accepted']} sent",
                     f"the bot at {r['fastest_bot_per_s']}/s (budget: the lower rate), {r['limiter_429']} × 429",
                     "bench/bots.py shared"))
    if "hundred" in chosen:
        say("hundred: 100 bots × 100 at rate 25, one process")
        bots = [f"bot-{i}" for i in range(100)]
        r = results["hundred"] = run([campaign(f"hundred-{i}", b, 100) for i, b in enumerate(bots)], bots)
        rows.append(("100 bots × 100 at 25/s, one `run`", f"slowest bot {r['slowest_bot_per_s']}/s, peak RSS {r['peak_rss_mib']} MiB",
                     f"{r['wall_s']} s, {r['accepted']} sent, {r['limiter_429']} × 429, exit {r['exit']}",
                     "bench/bots.py hundred"))
    saved = os.path.join(ROOT, "bench", "out", "bots.json")
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
