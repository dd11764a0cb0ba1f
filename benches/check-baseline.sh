#!/usr/bin/env bash
# Instruction counts against the committed baseline (a relative check beside the
# hard caps written in the bench code). Figure programs (ring_throughput, compare_*,
# kafka_*, enrich) are not gates and are left out.
#   benches/check-baseline.sh          compare; fails if Ir grew more than 10%
#   benches/check-baseline.sh --save   re-record the baseline (commit the result)
# gungraun needs an absolute --home; the baseline lives in benches/baselines/.
set -euo pipefail
cd "$(dirname "$0")/.."
home="$PWD/benches/baselines"
if [ "${1:-}" = "--save" ]; then
  mode=(--save-baseline=committed)
else
  mode=(--baseline=committed "--callgrind-limits=ir=10%")
fi
benches=$(awk '/^\[\[bench\]\]/ {getline; gsub(/name = |"/, ""); print}' Cargo.toml \
  | grep -v -e '^ring_throughput$' -e '^compare_' -e '^kafka_' -e '^enrich$')
for bench in $benches; do
  cargo bench --no-default-features --bench "$bench" -- --home="$home" "${mode[@]}"
done
