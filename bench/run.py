#!/usr/bin/env python3
"""The benchmark suite: every figure next to its reference, measured in one run.

Whole processes are measured (wall time and peak RSS from wait4), medians of
BENCH_RUNS runs (default 3). Data is generated here, seeded; nothing large is
committed. Usage: bench/run.sh [--quick] (quick: fewer rows, skips 10M).
"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
BIN = os.path.join(ROOT, "target", "release", "smax-campaign")
PY = os.path.join(OUT, "venv", "bin", "python")
QUICK = "--quick" in sys.argv
RUNS = int(os.environ.get("BENCH_RUNS", "1" if QUICK else "3"))
TOKEN = "bench-token"
rows_out = []


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def measure(cmd, env=None, cwd=None, stdout=subprocess.DEVNULL):
    """(wall seconds, peak RSS MiB, stdout text) of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE if stdout is None else stdout, stderr=subprocess.DEVNULL)
    out = proc.stdout.read().decode() if stdout is None else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024.0, out


def median_of(cmd, runs=None, **kw):
    results = [measure(cmd, **kw) for _ in range(runs or RUNS)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results), results[-1][2]


def row(what, figure, reference, ratio, target, command):
    rows_out.append((what, figure, reference, ratio, target, command))
    say(f"  {what}: {figure} | {reference} | {ratio}")


def gen(rows):
    path = os.path.join(OUT, f"audience-{rows}.csv")
    if not os.path.exists(path):
        say(f"generating {rows:,} rows")
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gen.py"), OUT, str(rows)], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(ROOT, "bench", "plan-campaign.yaml.in"), encoding="utf-8") as f:
        campaign = f.read().replace("AUDIENCE", f"audience-{rows}.csv")
    cpath = os.path.join(OUT, f"plan-{rows}.yaml")
    with open(cpath, "w", encoding="utf-8") as f:
        f.write(campaign)
    return path, cpath


def rel(p):
    return os.path.relpath(p, ROOT)


def bench_plan(rows):
    audience, campaign = gen(rows)
    cmd = [BIN, "plan", campaign, "--sample", "0", "--state", "none"]
    wall, rss, _ = median_of(cmd)
    ours = f"{wall:.2f} s, {rows / wall / 1e6:.2f} M rows/s, {rss:.0f} MiB"
    # The same pipeline in Python + Jinja2.
    jcmd = [PY, os.path.join(ROOT, "bench", "jinja_plan.py"), audience, os.path.join(OUT, "suppression.csv")]
    # The Python references take tens of seconds: one run each.
    jwall, jrss, _ = median_of(jcmd, runs=1)
    row(f"plan, {rows:,} rows (where, 10k suppression, dedupe, 4-field template with a condition)",
        ours, f"Python+Jinja2 script (1 run): {jwall:.2f} s, {jrss:.0f} MiB", f"{wall / jwall:.2f}× the time",
        "1M: < 3 s, < 100 MB", f"smax-campaign plan {rel(campaign)} --sample 0")
    # mailmerge's dry-run renders every row (it has no filter, suppression or dedupe).
    mm_rows = rows if rows <= 100_000 or not QUICK else 100_000
    mcmd = [os.path.join(OUT, "venv", "bin", "mailmerge"), "--dry-run", "--no-limit", "--output-format", "raw",
            "--template", os.path.join(ROOT, "bench", "mailmerge_template.txt"),
            "--database", audience, "--config", os.path.join(ROOT, "bench", "mailmerge_server.conf")]
    if rows <= 100_000:
        mwall, mrss, _ = median_of(mcmd, runs=1, cwd=OUT)
        row(f"mailmerge --dry-run, {mm_rows:,} rows (renders every row)", f"ours {wall:.2f} s", f"mailmerge (1 run) {mwall:.2f} s, {mrss:.0f} MiB",
            f"ours/theirs {wall / mwall:.3f}", "-", f"mailmerge --dry-run --no-limit --database {rel(audience)}")
    return wall, rss


def start_sandbox(extra):
    rec = os.path.join(OUT, "sandbox-record.jsonl")
    p = subprocess.Popen([BIN, "sandbox", "--listen", "127.0.0.1:0", "--bot", f"bench-bot={TOKEN}"] + extra,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode()
    url = line.strip().split(" ")[-1]
    return p, url


def write_run_campaign(rows, rate, concurrency, audience):
    path = os.path.join(OUT, f"run-{rows}-{rate}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"""version: 1
name: bench-run-{rows}-{int(rate)}
bot: {{ id: "bench-bot", token_env: BENCH_TOKEN, api: v2 }}
audience:
  from:
    - csv: {os.path.basename(audience)}
  key: "{{{{ customer_id }}}}"
recipient:
  customer_id: "{{{{ customer_id }}}}"
  customer_email: "{{{{ email }}}}"
message:
  tag: ACCOUNT_UPDATE
  text: "Chào {{{{ first_name }}}}, bạn có {{{{ points }}}} điểm tại {{{{ city }}}}, hạn dùng 31/12/2026."
delivery:
  rate: {rate}
  concurrency: {concurrency}
  retries: 5
  max_failures: "1000000"
""")
    return path


def run_send(campaign, url, state):
    env = dict(os.environ, BENCH_TOKEN=TOKEN, SMAX_API_URL=url)
    report = os.path.join(OUT, "report.json")
    cmd = [BIN, "-q", "run", campaign, "--report", report, "--state", state, "--new-state"]
    wall, rss, _ = measure(cmd, env=env)
    with open(report, encoding="utf-8") as f:
        r = json.load(f)["runs"][0]
    return r, wall, rss


def bench_run():
    rows = 20_000 if QUICK else 50_000
    audience, _ = gen(rows)
    campaign = write_run_campaign(rows, 1_000_000, 64, audience)
    sandbox, url = start_sandbox([])
    try:
        # The loopback ceiling: wrk against the same sandbox, same request.
        wrk = subprocess.run(["wrk", "-t2", "-c64", "-d5s", "-s", os.path.join(ROOT, "bench", "wrk-v2.lua"),
                              f"{url}/public/bots/bench-bot/send"], capture_output=True, text=True, check=True).stdout
        ceiling = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
        with_state, without_state = [], []
        for i in range(RUNS):
            for label, store in (("state", os.path.join(OUT, f"state-{i}.db")), ("none", "none")):
                if store != "none":
                    for suffix in ("", "-wal", "-shm"):
                        if os.path.exists(store + suffix):
                            os.remove(store + suffix)
                r, wall, rss = run_send(campaign, url, store)
                assert r["sent"] == r["plan"]["to_send"], r
                (with_state if label == "state" else without_state).append((r["sent"] / r["seconds"], rss))
        s = statistics.median(x[0] for x in with_state)
        n = statistics.median(x[0] for x in without_state)
        srss = statistics.median(x[1] for x in with_state)
        row(f"run against the sandbox, {rows:,} sends, rate limit off, concurrency 64, state on",
            f"{s:,.0f} sends/s, {srss:.0f} MiB", f"wrk -t2 -c64: {ceiling:,.0f} req/s", f"{s / ceiling:.0%} of wrk",
            ">= 5,000/s and >= 50% of wrk", f"smax-campaign run {rel(campaign)} (rate 1e6)")
        row("run, state on vs state off (--state none), same sandbox", f"state on {s:,.0f}/s", f"state off {n:,.0f}/s",
            f"{(n - s) / n:.0%} slower with state", "<= 20% slower", f"... --state none")
    finally:
        sandbox.send_signal(signal.SIGTERM)
        sandbox.wait()


def bench_rate():
    rows = 1000
    audience, _ = gen(rows)
    campaign = write_run_campaign(rows, 25, 8, audience)
    rec = os.path.join(OUT, "rate-record.jsonl")
    sandbox, url = start_sandbox(["--rate", "25", "--record", rec])
    try:
        r, wall, _ = run_send(campaign, url, "none")
    finally:
        sandbox.send_signal(signal.SIGTERM)
        sandbox.wait()
    times, n429 = [], 0
    with open(rec, encoding="utf-8") as f:
        for line in f:
            rec_ = json.loads(line)
            times.append(rec_["t_us"])
            n429 += rec_["status"] == 429
    times.sort()
    best, lo = 0, 0
    for hi in range(len(times)):
        while times[hi] - times[lo] >= 1_000_000:
            lo += 1
        best = max(best, hi - lo + 1)
    achieved = (len(times) - 1) / ((times[-1] - times[0]) / 1e6)
    row("rate precision: 1,000 sends at rate 25 against sandbox --rate 25",
        f"{achieved:.2f}/s, {n429} × 429", f"largest count in any 1-s window: {best}", "-",
        "no 429, >= 24.5/s", f"smax-campaign run {rel(campaign)} (sandbox --rate 25)")


def bench_validate():
    folder = os.path.join(OUT, "validate")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(os.path.join(folder, "audiences"))
    with open(os.path.join(folder, "smax.yaml"), "w") as f:
        f.write('bots:\n  shop:\n    id: "b"\n    token_env: T\n')
    shutil.copy(os.path.join(ROOT, "campaigns", "audiences", "members.csv"), os.path.join(folder, "audiences"))
    shutil.copy(os.path.join(ROOT, "campaigns", "audiences", "unsubscribed.csv"), os.path.join(folder, "audiences"))
    with open(os.path.join(ROOT, "campaigns", "loyalty-points.yaml"), encoding="utf-8") as f:
        base = f.read()
    for i in range(200):
        with open(os.path.join(folder, f"c{i:03d}.yaml"), "w", encoding="utf-8") as f:
            f.write(base.replace("name: loyalty-points-expiry", f"name: loyalty-{i:03d}"))
    wall, rss, _ = median_of([BIN, "validate", folder])
    row("validate, 200 campaign files", f"{wall * 1000:.0f} ms, {rss:.0f} MiB", "-", "-", "< 0.5 s", f"smax-campaign validate {rel(folder)}")


def main():
    os.makedirs(OUT, exist_ok=True)
    say("building (release)")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    if not os.path.exists(PY):
        say("installing the Python references into bench/out/venv")
        subprocess.run([sys.executable, "-m", "venv", os.path.join(OUT, "venv")], check=True)
        subprocess.run([PY, "-m", "pip", "install", "-q", "-r", os.path.join(ROOT, "bench", "requirements.txt")], check=True)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed for the loopback ceiling: apt-get install wrk")
    say("plan")
    bench_plan(100_000)
    w1, r1 = bench_plan(1_000_000)
    if not QUICK and not os.environ.get("BENCH_SKIP_10M"):
        audience, campaign = gen(10_000_000)
        w10, r10, _ = measure([BIN, "plan", campaign, "--sample", "0", "--state", "none"])
        per_key = (r10 - r1) * 1024 * 1024 / 9_000_000
        row("memory growth: plan at 1M vs 10M unique keys", f"1M: {r1:.0f} MiB, 10M: {r10:.0f} MiB ({w10:.1f} s)", "-",
            f"{per_key:.0f} bytes per extra key", "only the key sets grow", f"smax-campaign plan {rel(campaign)}")
    say("validate")
    bench_validate()
    say("run")
    bench_run()
    say("rate precision (about 40 s)")
    bench_rate()
    machine = subprocess.run(["sh", "-c", "nproc; grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; free -g | awk '/Mem/ {print $2\" GiB\"}'"], capture_output=True, text=True).stdout.split("\n")
    lines = [f"Machine: {machine[0].strip()} cores,{machine[1]}, {machine[2].strip()} RAM; medians of {RUNS} run(s).", "",
             "| what | ours | reference | ratio | target | command |", "|---|---|---|---|---|---|"]
    for r in rows_out:
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in r[:5]) + f" | `{r[5]}` |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
