#!/usr/bin/env bash
# The benchmark suite's one entry point: bench/run.sh [--quick]
# Needs: cargo, python3, wrk (apt-get install wrk). Writes bench/out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/run.py "$@"
