#!/usr/bin/env python3
"""Sending with each state backend, in one invocation (BENCHMARKS.md, "State backends").

usage: .ci/with-postgres bench/state.py [--no-build] [--rows N] [--runs N]

For `--state none`, a SQLite file and a PostgreSQL database, in turn, against one sandbox:
  flat out  N sends (default 20,000) at rate 1e6, concurrency 64: sends/s (median of
            --runs, default 3), from the run's own report
  paced     20 bots x 100 recipients at rate 25 in one `run` (sandbox --rate 25): the
            slowest bot's rate, from the sandbox's record
For PostgreSQL, the journal's side of the flat-out run, from pg_stat_database: commits
per second, and journal records (an attempt and an outcome per send) per commit.

The PostgreSQL server is the one SMAX_TEST_DATABASE_URL names (`.ci/with-postgres`
starts a throwaway one on 127.0.0.1; its fsync is off, so the figures are the client's
and the protocol's, not a disk's). Every run gets a new database. Results go to stdout
as a Markdown table and to bench/out/state.json.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from sending import BIN, ROOT, Sandbox, arg, build, campaign, fresh_state, per_second, report, run_env, say

OUT = os.path.join(ROOT, "bench", "out", "state")
ADMIN = os.environ.get("SMAX_TEST_DATABASE_URL", "")


def psql(url, sql):
    return subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True, text=True).stdout.strip()


class Database:
    """A new database on the server, dropped afterwards."""

    count = 0

    def __init__(self):
        Database.count += 1
        self.name = f"smax_bench_{os.getpid()}_{Database.count}"
        psql(ADMIN, f"CREATE DATABASE {self.name}")
        self.url = ADMIN.rsplit("/", 1)[0] + "/" + self.name

    def stats(self):
        commits, inserted, updated = psql(
            self.url,
            "SELECT xact_commit, tup_inserted, tup_updated FROM pg_stat_database "
            "WHERE datname = current_database()").split("|")
        return int(commits), int(inserted) + int(updated)

    def drop(self):
        psql(ADMIN, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def stores():
    """(label, a function that makes a fresh store location and its cleanup)."""
    def none():
        return "none", lambda: None

    def sqlite():
        return fresh_state(os.path.join(OUT, "state.db")), lambda: None

    def postgres():
        db = Database()
        return db, db.drop

    return [("none", none), ("SQLite", sqlite), ("PostgreSQL", postgres)]


def location(store):
    return store.url if isinstance(store, Database) else store


def flat_out(sandbox, camp, store):
    """One flat-out run; (sends/s, PostgreSQL journal figures or None)."""
    report_path = os.path.join(OUT, "report.json")
    before = store.stats() if isinstance(store, Database) else None
    proc = subprocess.run([BIN, "-q", "run", camp, "--report", report_path, "--state", location(store), "--new-state"],
                          env=run_env(sandbox.url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {proc.stderr}")
    with open(report_path, encoding="utf-8") as f:
        r = json.load(f)["runs"][0]
    assert r["sent"] == r["plan"]["to_send"], r
    journal = None
    if before is not None:
        time.sleep(1)  # the server's statistics arrive once the run's session has ended
        commits, rows = store.stats()
        commits -= before[0]
        rows -= before[1]
        journal = {"commits": commits, "commits_per_s": commits / r["seconds"],
                   "records_per_commit": 2 * r["sent"] / max(commits, 1), "rows_written": rows}
    return r["sent"] / r["seconds"], journal


def paced(store, bots):
    sandbox = Sandbox(OUT, bots, "--rate", "25")
    try:
        camps = [campaign(OUT, f"paced-{i}", bot, 100, "rate: 25\nretries: 10") for i, bot in enumerate(bots)]
        proc = subprocess.run([BIN, "-q", "run", *camps, "--state", location(store), "--new-state"],
                              env=run_env(sandbox.url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"paced run failed ({proc.returncode}): {proc.stderr}")
    finally:
        sandbox.stop()
    by_bot = {}
    for r in sandbox.records():
        if r["accepted"]:
            by_bot.setdefault(r["bot"], []).append(r["t_us"])
    return min(per_second(ts) for ts in by_bot.values())


def main():
    if not ADMIN:
        raise SystemExit("SMAX_TEST_DATABASE_URL is not set: run `.ci/with-postgres bench/state.py`")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "smax.yaml"), "w", encoding="utf-8") as f:
        f.write("state: state.db\n")
    rows, runs = arg("--rows", 20_000), arg("--runs", 3)
    build()
    flat = campaign(OUT, "flat", "bench-bot", rows, 'rate: 1000000\nconcurrency: 64\nmax_failures: "1000000"')
    bots = [f"bot-{i}" for i in range(20)]
    results, table = {}, []
    for label, make in stores():
        say(f"{label}: {runs} x {rows:,} sends flat out")
        rates, journals = [], []
        sandbox = Sandbox(OUT, ["bench-bot"])
        try:
            for _ in range(runs):
                store, cleanup = make()
                try:
                    rate, journal = flat_out(sandbox, flat, store)
                finally:
                    cleanup()
                rates.append(rate)
                if journal:
                    journals.append(journal)
        finally:
            sandbox.stop()
        say(f"{label}: 20 bots x 100 at rate 25")
        store, cleanup = make()
        try:
            slowest = paced(store, bots)
        finally:
            cleanup()
        result = {"flat_out_per_s": [round(r) for r in rates], "median_per_s": round(statistics.median(rates)),
                  "paced_slowest_bot_per_s": round(slowest, 2)}
        detail = f"20 bots x 100 at 25/s: slowest bot {slowest:.2f}/s"
        if journals:
            cps = statistics.median(j["commits_per_s"] for j in journals)
            rpc = statistics.median(j["records_per_commit"] for j in journals)
            result["journal"] = journals
            detail += f"; journal: {cps:,.0f} commits/s, {rpc:.1f} records per commit"
        results[label] = result
        table.append((f"`run`, {rows:,} sends flat out (concurrency 64), state {label}",
                      f"{statistics.median(rates):,.0f} sends/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})",
                      detail, ".ci/with-postgres bench/state.py"))
    report("state", results, table)


if __name__ == "__main__":
    main()
