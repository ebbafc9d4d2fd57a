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
import os
import sys
import time
import subprocess

from sending import BIN, ROOT, Sandbox, report, build, campaign as write_campaign, fresh_state, per_second, run_env, say

OUT = os.path.join(ROOT, "bench", "out", "bots")


def campaign(name, bot, rows, rate=25):
    return write_campaign(OUT, name, bot, rows, f"rate: {rate}\nretries: 10")


def run(campaigns, bots):
    """One `run` of every campaign in one process, against a sandbox that knows `bots`."""
    state = fresh_state(os.path.join(OUT, "state.db"))
    sandbox = Sandbox(OUT, bots, "--rate", "25")
    try:
        env = run_env(sandbox.url)
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
    build()
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
    report("bots", results, rows)


if __name__ == "__main__":
    main()
