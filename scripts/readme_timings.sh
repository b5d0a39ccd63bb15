#!/usr/bin/env bash
# The README's set-up timings, measured the way a new user meets them: a fresh clone, `make run` (install + the
# embedded comparison, cold artifact store), `make test`, then a warm single run. Prints a markdown table with
# the machine it ran on. Run it on a quiet machine: parallel work distorts every figure.
#   bash scripts/readme_timings.sh [repository to clone, default: this one]
set -euo pipefail
src="$(cd "${1:-$(dirname "$0")/..}" && pwd)"
work="$(mktemp -d /tmp/mpo-timings-XXXXXX)"
git clone --quiet "$src" "$work/mpo"
cd "$work/mpo"

seconds() {  # seconds <label> <command...>: run, keep the console in $work/<label>.log, echo the wall seconds
  local label=$1 start end; shift
  start=$(date +%s.%N)
  "$@" >"$work/$label.log" 2>&1 || { echo "$label failed: see $work/$label.log" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 -c "print(round($end - $start))"
}
mmss() { python3 -c "s=int($1); print(f'{s // 60} min {s % 60:02d} s')"; }

run=$(seconds make_run make run)
test=$(seconds make_test make test)
warm=$(seconds warm_reference env HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_SILENT=true \
       .venv/bin/python -m mpo.run method=reference)
cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
mem="$(free -g | awk '/^Mem:/ {print $2}')"
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($cpu), $mem GiB, no GPU; fresh clone of $(git rev-parse --short HEAD):"
echo
echo "| command | wall time |"
echo "|---|---|"
echo "| \`make run\` (install + every method, cold store) | $(mmss "$run") |"
echo "| \`make test\` (install is done; the fast suite) | $(mmss "$test") |"
echo "| \`python -m mpo.run method=reference\` (warm store) | $(mmss "$warm") |"
echo "| console lines printed by \`make run\` | $(wc -l <"$work/make_run.log") |"
echo
echo "logs: $work/*.log"
