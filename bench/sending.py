"""What the sending benchmarks share (pacing.py, bots.py, resume.py): the release
binary, seeded audiences, campaign files, the strict sandbox and its record."""
import json
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "smax-campaign")
TOKEN = "bench-token"


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def arg(name, default):
    """The integer after `name` on the command line, or `default`."""
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


def build():
    """Builds the release binary unless `--no-build` was given."""
    if "--no-build" not in sys.argv:
        say("building (release)")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def audience(out, rows):
    """`out`/audience-ROWS.csv (generated once, seeded); its file name."""
    path = os.path.join(out, f"audience-{rows}.csv")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gen.py"), out, str(rows)],
                       check=True, stdout=subprocess.DEVNULL)
    return os.path.basename(path)


def campaign(out, name, bot, rows, delivery="rate: 25"):
    """`out`/NAME.yaml: a V2 campaign for `bot` over `rows` generated customers;
    `delivery` is the body of its `delivery:` block."""
    path = os.path.join(out, f"{name}.yaml")
    lines = "\n".join(f"  {line}" for line in delivery.splitlines())
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"""version: 1
name: {name}
bot: {{ id: "{bot}", token_env: BENCH_TOKEN, api: v2 }}
audience:
  from:
    - csv: {audience(out, rows)}
  key: "{{{{ customer_id }}}}"
recipient:
  customer_id: "{{{{ customer_id }}}}"
message:
  tag: ACCOUNT_UPDATE
  text: "Chào {{{{ first_name }}}}, bạn có {{{{ points }}}} điểm."
delivery:
{lines}
""")
    return path


def fresh_state(path):
    """`path`, with no database (nor its -wal, -shm) left there."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path


def run_env(url):
    return dict(os.environ, BENCH_TOKEN=TOKEN, SMAX_API_URL=url)


class Sandbox:
    """`smax-campaign sandbox` on a free port, knowing `bots` (all with TOKEN), with
    `extra` flags, recording every request to `out`/record.jsonl."""

    def __init__(self, out, bots, *extra):
        self.record = os.path.join(out, "record.jsonl")
        if os.path.exists(self.record):
            os.remove(self.record)
        args = [BIN, "sandbox", "--listen", "127.0.0.1:0", "--record", self.record, *extra]
        for bot in bots:
            args += ["--bot", f"{bot}={TOKEN}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.url = self.proc.stdout.readline().decode().strip().split(" ")[-1]
        if not self.url.startswith("http"):
            # It exited (or printed something else) instead of listening: say so now,
            # not as a confusing failure of the first run.
            self.proc.kill()
            code = self.proc.wait()
            sys.exit(f"the sandbox did not start (exit {code}): run `{' '.join(args)}` to see why")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()

    def records(self):
        with open(self.record, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def per_second(times):
    """Requests per second between the first and the last of `times` (µs)."""
    times = sorted(times)
    return (len(times) - 1) / ((times[-1] - times[0]) / 1e6) if len(times) > 1 else 0.0


def report(name, results, rows):
    """Keeps `results` in bench/out/NAME.json (figures measured by earlier invocations
    are kept, one per key) and prints `rows` (what, figure, detail, command) as a
    Markdown table."""
    saved = os.path.join(ROOT, "bench", "out", f"{name}.json")
    if os.path.exists(saved):
        with open(saved, encoding="utf-8") as f:
            results = {**json.load(f), **results}
    with open(saved, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    print("| what | figure | detail | command |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r[:3]) + f" | `{r[3]}` |")
