#!/usr/bin/env python3
"""Resume cost (BENCHMARKS.md, "Resume"): a run that resumes a big audience against a
fresh start of the same audience.

usage: bench/resume.py [--no-build] [--rows N] [--left N]

Fresh: `run` of an audience of N rows (default 1,000,000) with a new state store.
Resume: the same run, after a store that records N - LEFT of its recipients as sent
(default LEFT 1,000; written straight into the database, as a long first attempt would
have left it). Both are stopped with Ctrl-C (SIGINT) 2 s after their first request.

Figures: peak RSS of the `run` process (wait4), and the time from starting it to the
first request the sandbox receives (the record file is polled every 2 ms). Medians of
BENCH_RUNS runs (default 3). Results go to stdout as a Markdown table and to
bench/out/resume.json.
"""
import json
import os
import shutil
import subprocess
import signal
import sqlite3
import statistics
import time

from sending import ROOT, BIN, Sandbox, arg, build, campaign as write_campaign, fresh_state as no_state, run_env, say

OUT = os.path.join(ROOT, "bench", "out", "resume")
BOT = "bench-bot"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


def campaign(rows):
    return write_campaign(OUT, "resume", BOT, rows)


def one_run(path, state, new_state):
    """(peak RSS MiB, seconds to the first request) of one `run`, stopped 2 s after it."""
    sandbox = Sandbox(OUT, [BOT], "--rate", "25")
    record = sandbox.record
    try:
        env = run_env(sandbox.url)
        cmd = [BIN, "-q", "run", path, "--state", state]
        if new_state:
            cmd.append("--new-state")
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first, ended = None, None
        while ended is None:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                ended = (status, usage)
            elif first is None and os.path.exists(record) and os.path.getsize(record) > 0:
                first = time.monotonic() - start
            elif first is not None and time.monotonic() - start > first + 2:
                proc.send_signal(signal.SIGINT)  # stops as interrupted, exit 0
                time.sleep(0.002)
            else:
                time.sleep(0.002)
        status, usage = ended
        if os.waitstatus_to_exitcode(status) not in (0, 1):  # Ctrl-C ends a run with 1
            raise SystemExit(f"run failed ({status}): {' '.join(cmd)}")
    finally:
        sandbox.stop()
    return usage.ru_maxrss / 1024.0, first


def fresh_state(name):
    return no_state(os.path.join(OUT, f"{name}.db"))


def settled_store(path, rows, left):
    """A store whose run `resume` recorded every recipient but the last `left` as sent."""
    template = os.path.join(OUT, f"settled-{rows}-{left}.db")
    if not os.path.exists(template):
        say(f"writing a store with {rows - left:,} sent recipients")
        state = fresh_state("template")
        one_run(path, state, True)  # the run record, with this campaign's fingerprint
        db = sqlite3.connect(state)
        run = db.execute("SELECT id FROM runs WHERE run_id = 'resume'").fetchone()[0]
        db.execute("DELETE FROM deliveries WHERE run = ?", (run,))
        db.executemany(
            "INSERT INTO deliveries (run, recipient, source, source_row, class, attempts, status,"
            " platform_text, first_ms, last_ms) VALUES (?, ?, 'audience.csv', ?, 'sent', 1, 200, 'ok', 0, 0)",
            ((run, f"C{i:08d}", i + 2) for i in range(rows - left)))
        db.execute("UPDATE runs SET status = 'interrupted' WHERE id = ?", (run,))
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        shutil.copyfile(state, template)
    state = fresh_state("resume")
    shutil.copyfile(template, state)
    return state


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "smax.yaml"), "w", encoding="utf-8") as f:
        f.write("state: state.db\n")
    rows, left = arg("--rows", 1_000_000), arg("--left", 1000)
    build()
    path = campaign(rows)
    fresh, resumed = [], []
    for i in range(RUNS):
        say(f"run {i + 1}/{RUNS}: fresh")
        fresh.append(one_run(path, fresh_state("fresh"), True))
        say(f"run {i + 1}/{RUNS}: resume")
        resumed.append(one_run(path, settled_store(path, rows, left), False))
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    result = {
        "rows": rows,
        "left": left,
        "fresh_peak_mib": round(med(fresh, 0), 1),
        "resume_peak_mib": round(med(resumed, 0), 1),
        "fresh_first_request_s": round(med(fresh, 1), 2),
        "resume_first_request_s": round(med(resumed, 1), 2),
    }
    result["fresh_samples"] = [[round(m, 1), round(t, 2)] for m, t in fresh]
    result["resume_samples"] = [[round(m, 1), round(t, 2)] for m, t in resumed]
    result["peak_ratio"] = round(result["resume_peak_mib"] / result["fresh_peak_mib"], 2)
    result["first_request_ratio"] = round(result["resume_first_request_s"] / result["fresh_first_request_s"], 2)
    with open(os.path.join(ROOT, "bench", "out", "resume.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print("| what | fresh start | resume | ratio |\n|---|---|---|---|")
    print(f"| peak RSS, {rows:,} rows ({rows - left:,} already sent) | {result['fresh_peak_mib']} MiB | "
          f"{result['resume_peak_mib']} MiB | {result['peak_ratio']}× |")
    spread = lambda xs: f"{min(x[1] for x in xs):.2f}–{max(x[1] for x in xs):.2f}"
    print(f"| time to the first request | {result['fresh_first_request_s']} s ({spread(fresh)}) | "
          f"{result['resume_first_request_s']} s ({spread(resumed)}) | {result['first_request_ratio']}× |")


if __name__ == "__main__":
    main()
