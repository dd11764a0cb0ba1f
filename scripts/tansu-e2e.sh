#!/usr/bin/env bash
# End-to-end: corestream against a real Kafka-compatible broker (tansu, in memory).
#
#   scripts/tansu-e2e.sh
#
# Needs `tansu` on PATH (cargo install tansu --version '^0.6' --features dynostore;
# ~20 minutes to build). Environment: MESSAGES (default 200000), PORT (19092),
# PROFILE (release | debug, default release), KEEP=1 keeps the work directory.
#
# Steps, all with the `corestream` binary:
#  1. start tansu; `corestream check` against a closed port fails fast (exit 3);
#  2. generator -> kafka sink: MESSAGES orders into e2e-in, created by corestream
#     (create_topics = true, 4 partitions) through the broker's CreateTopics API;
#  3. `corestream check` reports the broker, e2e-in and its 4 partitions;
#  4. kafka e2e-in -> kafka e2e-out (group e2e) in the background; a verifier
#     kafka e2e-out -> file reads the output;
#  5. the e2e pipeline is killed with SIGKILL a third of the way in and restarted;
#  6. when the file holds every order id, both are stopped with SIGTERM (exit 0);
#  7. every id 0..MESSAGES is in the output (duplicates from the replay are counted);
#     a last run of the e2e pipeline finds nothing left to read: its group's
#     offsets cover every message.
set -euo pipefail

MESSAGES=${MESSAGES:-200000}
PORT=${PORT:-19092}
PROFILE=${PROFILE:-release}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/corestream-tansu-e2e.XXXXXX)
BROKERS="127.0.0.1:$PORT"
PIDS=()

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n(work directory: %s)\n' "$*" "$WORK" >&2; KEEP=1; exit 1; }
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Sends SIGTERM to $2 and waits at most $1 seconds for a clean exit (status 0).
stop_within() {
    local seconds=$1 pid=$2
    kill -TERM "$pid"
    for _ in $(seq 1 $((seconds * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"
            return $?
        fi
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    return 1
}

command -v tansu >/dev/null || fail "tansu is not on PATH (cargo install tansu --version '^0.6' --features dynostore)"

say "building corestream ($PROFILE)"
if [ "$PROFILE" = release ]; then
    (cd "$ROOT" && cargo build --release --bin corestream)
else
    (cd "$ROOT" && cargo build --bin corestream)
fi
CS="$TARGET/$PROFILE/corestream"
[ -x "$CS" ] || fail "no binary at $CS"

say "starting tansu on $BROKERS (memory storage)"
tansu broker --listener-url "tcp://$BROKERS" --advertised-listener-url "tcp://$BROKERS" \
    --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
PIDS+=($!)
disown $!

# -- configs ---------------------------------------------------------------------
cat >"$WORK/generate.toml" <<TOML
[engine]
workers = 2
pin = false
[source]
type = "generator"
count = $MESSAGES
keys = 1000
message_bytes = 200
[sink]
type = "kafka"
brokers = "$BROKERS"
topic = "e2e-in"
create_topics = true
topic_partitions = 4
TOML
cat >"$WORK/e2e.toml" <<TOML
[engine]
workers = 2
pin = false
[source]
type = "kafka"
brokers = "$BROKERS"
group = "e2e"
topics = ["e2e-in"]
commit_interval = "1s"
commit_every_messages = 20000
[sink]
type = "kafka"
brokers = "$BROKERS"
topic = "e2e-out"
create_topics = true
topic_partitions = 3
compression = "lz4"
TOML
cat >"$WORK/verify.toml" <<TOML
[engine]
workers = 1
pin = false
[source]
type = "kafka"
brokers = "$BROKERS"
group = "verify"
topics = ["e2e-out"]
create_topics = true
topic_partitions = 3
[sink]
type = "file"
path = "out.ndjson"
append = true
TOML
sed "s/127.0.0.1:$PORT/127.0.0.1:1/" "$WORK/e2e.toml" >"$WORK/nowhere.toml"

say "check against a closed port fails fast"
set +e
timeout 60 "$CS" check --timeout-secs 2 "$WORK/nowhere.toml" >"$WORK/nowhere.out" 2>&1
code=$?
set -e
cat "$WORK/nowhere.out"
[ $code = 3 ] || fail "check against a closed port exited $code, expected 3"

say "waiting for the broker"
up=0
for _ in $(seq 1 60); do
    if "$CS" check --timeout-secs 2 "$WORK/generate.toml" >/dev/null 2>&1; then up=1; break; fi
    sleep 1
done
[ $up = 1 ] || { cat "$WORK/tansu.log"; fail "tansu did not come up"; }

say "1/4 generator -> kafka e2e-in ($MESSAGES orders; corestream creates the topic)"
"$CS" validate "$WORK/generate.toml" >/dev/null
start=$(date +%s.%N)
(cd "$WORK" && "$CS" run --progress-secs 0 generate.toml) 2>"$WORK/generate.log" || { cat "$WORK/generate.log"; fail "generate"; }
end=$(date +%s.%N)
tail -3 "$WORK/generate.log"
awk -v s="$start" -v e="$end" -v n="$MESSAGES" 'BEGIN { printf "generator -> tansu: %.0f msg/s\n", n / (e - s) }'

say "2/4 corestream check"
"$CS" check "$WORK/e2e.toml" | tee "$WORK/check.out" || true
grep -q "e2e-in: 4 partitions" "$WORK/check.out" || fail "check did not report e2e-in with 4 partitions"

lines() { if [ -f "$WORK/out.ndjson" ]; then wc -l <"$WORK/out.ndjson"; else echo 0; fi; }
distinct() { grep -o '"id":[0-9]*' "$WORK/out.ndjson" | sort -u | wc -l; }

say "3/4 kafka e2e-in -> kafka e2e-out, killed with SIGKILL a third of the way in"
(cd "$WORK" && exec "$CS" run --progress-secs 0 verify.toml) 2>"$WORK/verify.log" &
VERIFY=$!
PIDS+=($VERIFY)
(cd "$WORK" && exec "$CS" run --progress-secs 0 e2e.toml) 2>"$WORK/e2e-1.log" &
E2E=$!
PIDS+=($E2E)
deadline=$(( $(date +%s) + 300 ))
while [ "$(lines)" -lt $((MESSAGES / 3)) ]; do
    kill -0 $E2E 2>/dev/null || { cat "$WORK/e2e-1.log"; fail "the e2e pipeline ended early"; }
    [ "$(date +%s)" -lt $deadline ] || fail "no progress: $(lines) lines"
    sleep 0.2
done
kill -9 $E2E
wait $E2E 2>/dev/null || true
echo "killed at $(lines) output lines"
(cd "$WORK" && exec "$CS" run --progress-secs 0 e2e.toml) 2>"$WORK/e2e-2.log" &
E2E=$!
PIDS+=($E2E)

say "4/4 waiting for every order in the output"
deadline=$(( $(date +%s) + 600 ))
while [ "$(distinct)" -lt "$MESSAGES" ]; do
    [ "$(date +%s)" -lt $deadline ] || fail "only $(distinct) of $MESSAGES distinct orders arrived"
    sleep 1
done
stop_within 60 $E2E || fail "the e2e pipeline did not stop cleanly"
stop_within 60 $VERIFY || fail "the verifier did not stop cleanly"
tail -3 "$WORK/e2e-2.log"

total=$(lines)
unique=$(distinct)
expected_ids=$MESSAGES
missing=$(comm -13 <(grep -o '"id":[0-9]*' "$WORK/out.ndjson" | cut -d: -f2 | sort -u) <(seq 1 "$MESSAGES" | sort -u) | wc -l)
echo "output: $total lines, $unique distinct orders of $expected_ids, $missing missing, $((total - unique)) duplicates (replayed after the kill)"
[ "$missing" = 0 ] || fail "$missing orders missing"

say "a restart finds nothing left: the committed offsets cover every message"
before=$(lines)
(cd "$WORK" && exec "$CS" run --progress-secs 0 e2e.toml) 2>"$WORK/e2e-3.log" &
E2E=$!
PIDS+=($E2E)
sleep 8
stop_within 60 $E2E || fail "the last e2e run did not stop cleanly"
grep "messages in" "$WORK/e2e-3.log" || true
grep -q "messages in 0 " "$WORK/e2e-3.log" || fail "the restarted pipeline read messages again: offsets were not committed"
"$CS" check "$WORK/e2e.toml" | tee "$WORK/check-end.out"
# Offsets start at 0, so the committed offsets add up to the number of messages.
# (tansu 0.6 reports a partition's end offset as its last batch's base offset, so
# the "end" and "lag" figures understate; the committed sum is exact.)
grep -q "group \"e2e\" on e2e-in: lag 0 (committed $MESSAGES," "$WORK/check-end.out" \
    || fail "the group e2e did not commit all $MESSAGES messages"

say "PASSED: $MESSAGES orders through tansu, $((total - unique)) duplicates after a kill -9, nothing missing"
