#!/usr/bin/env bash
# A/B of `semlab bench simulate --write` (writing a simulated dataset: images, masks, clean
# images, contours, manifest): BEFORE_COMMIT against the working tree, same venv.
#
#   tools/bench_ab.sh BEFORE_COMMIT [REPS]      (REPS >= 5 for a claim; default 5)
#   BENCH_N=500 BENCH_SIZE=256 tools/bench_ab.sh cbf9c6f
#
# BEFORE_COMMIT is checked out with `git worktree` in /tmp (removed at the end); each run
# imports semlab from its own tree through PYTHONPATH (checked). Runs alternate before and
# after (ABBA order: B-A, A-B, ...), single-threaded. Prints one JSON object: the CPU
# (lscpu "Model name"), every run's images/s, the medians and after/before. Run it on an
# idle machine: on a shared one the timings are noise.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 BEFORE_COMMIT [REPS]" >&2
    exit 2
fi
BEFORE=$1
REPS=${2:-5}
N=${BENCH_N:-500}
SIZE=${BENCH_SIZE:-256}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$HERE/.venv/bin/python}
SHA=$(git -C "$HERE" rev-parse --verify "$BEFORE^{commit}")
WT=$(mktemp -d /tmp/semlab-ab-XXXXXX)
RESULTS=$(mktemp /tmp/semlab-ab-results-XXXXXX)
cleanup() {
    git -C "$HERE" worktree remove --force "$WT" >/dev/null 2>&1 || rm -rf "$WT"
    git -C "$HERE" worktree prune >/dev/null 2>&1 || true
    rm -f "$RESULTS"
}
trap cleanup EXIT
rmdir "$WT"
git -C "$HERE" worktree add --detach --quiet "$WT" "$SHA"

export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

run() {  # run TREE LABEL: one bench, appends "LABEL images_per_s" to $RESULTS
    local tree=$1 label=$2 where
    where=$(cd /tmp && PYTHONPATH="$tree" "$PY" -c 'import semlab, os; print(os.path.dirname(os.path.dirname(semlab.__file__)))')
    if [ "$where" != "$tree" ]; then
        echo "$label: semlab was imported from $where, not $tree" >&2
        exit 1
    fi
    (cd /tmp && PYTHONPATH="$tree" "$PY" -m semlab bench simulate --write --json --n "$N" --size "$SIZE") |
        "$PY" -c '
import json, sys
recs = [json.loads(line) for line in sys.stdin if line.startswith("{")]
w = [r for r in recs if r.get("name") == "simulate_dataset"]
if not w:
    sys.exit("no simulate_dataset record in the bench output")
print(sys.argv[1], w[0]["images_per_s"])' "$label" >>"$RESULTS"
    tail -n 1 "$RESULTS" >&2
}

for ((i = 1; i <= REPS; i++)); do
    if ((i % 2)); then
        run "$WT" before
        run "$HERE" after
    else
        run "$HERE" after
        run "$WT" before
    fi
done

CPU=$(lscpu | grep "Model name" | head -n 1 | sed 's/^Model name:[[:space:]]*//')
AFTER_DESC="working tree at $(git -C "$HERE" rev-parse --short HEAD)$(git -C "$HERE" diff --quiet HEAD -- && echo '' || echo ' + uncommitted changes')"
"$PY" - "$RESULTS" "$SHA" "$AFTER_DESC" "$CPU" "$N" "$SIZE" "$REPS" <<'EOF'
import json, statistics, sys

path, sha, after, cpu, n, size, reps = sys.argv[1:]
runs = {"before": [], "after": []}
for line in open(path):
    label, value = line.split()
    runs[label].append(float(value))
mb, ma = statistics.median(runs["before"]), statistics.median(runs["after"])
print(json.dumps({"bench": "semlab bench simulate --write", "n": int(n), "size": int(size), "reps": int(reps),
                  "cpu": cpu, "before": sha, "after": after,
                  "before_images_per_s": runs["before"], "after_images_per_s": runs["after"],
                  "median_before": mb, "median_after": ma, "ratio_after_over_before": round(ma / mb, 4)},
                 indent=2))
EOF
