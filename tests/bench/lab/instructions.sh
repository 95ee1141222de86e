#!/bin/bash
# Instructions per request of a gateway binary at c=1 (callgrind; counters zeroed after a
# warm-up, so start-up is not counted), against the lab of start.sh, whose gateway it
# replaces while it runs. Usage: [SCRIPT=post-stream] [ENDPOINT=/api/v1/messages] instructions.sh GATEWAY_BIN NAME
# (SCRIPT names the wrk script under $LAB: post, the default, post-stream for streamed answers,
# post-long for a 45 KB conversation, or post-messages for the Anthropic skin, with
# ENDPOINT=/api/v1/messages)
# CP=stopped freezes the lab's control plane (SIGSTOP, resumed at the end) and CP=locked holds its
# database's write lock (python3's sqlite3) for the measured 10 s: the hot path must not do more
# work during a control-plane outage than with it up.
set -uo pipefail
D=${LAB:-/tmp/switchyard-lab}; READY=http://127.0.0.1:18090/api/v1/chat/completions
U=http://127.0.0.1:18090${ENDPOINT:-/api/v1/chat/completions}
AK=sk-sy-v1-$(printf "b%.0s" $(seq 64))
ARGS="--listen 127.0.0.1:18090 --control-plane http://127.0.0.1:18081 --control-plane-http http://127.0.0.1:18080 --node-token nodetoken-0123456789 --node-id lab"
pkill -f -- "--node-id lab" || true; sleep 0.5
rm -rf "$D/spool-cg" "$D/cg-$2.out"*
# shellcheck disable=SC2086
SWITCHYARD_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$D/cg-$2.out" "$1" $ARGS --spool-dir "$D/spool-cg" > "$D/gwcg.log" 2>&1 &
VG=$!
for _ in $(seq 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $AK" -H 'content-type: application/json' $READY -d @"$D/body.json")
  [ "$code" = 200 ] && break; sleep 0.2
done
S="$D/${SCRIPT:-post}.lua"
echo "warming up"; wrk -t1 -c1 -d3s -s "$S" $U > /dev/null
CPPID=$(pgrep -f -- "control-plane --data-dir $D/data" | head -1)
case ${CP:-up} in
  up) ;;
  stopped) kill -STOP "$CPPID"; echo "control plane $CPPID stopped" ;;
  locked) coproc LOCKER { python3 -c 'import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute("BEGIN EXCLUSIVE")
print("database write-locked", flush=True); time.sleep(float(sys.argv[2]))' "$D/data/switchyard.db" 12; }
    LOCK=$LOCKER_PID; read -r line <&"${LOCKER[0]}"; echo "$line" ;;
  *) echo "CP must be up, stopped or locked" >&2; exit 2 ;;
esac
callgrind_control -z $VG > /dev/null
echo "measuring for 10 s"; N=$(wrk -t1 -c1 -d10s -s "$S" $U | awk '/requests in/{print $1}')
callgrind_control -d $VG > /dev/null
[ "${CP:-up}" = stopped ] && kill -CONT "$CPPID"
[ -n "${LOCK:-}" ] && wait "$LOCK"
sleep 1
kill -INT $VG; wait $VG 2>/dev/null
F=$(ls -t "$D/cg-$2.out".* | head -1)
T=$(callgrind_annotate "$F" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
echo "$2: $N requests, $((T / N)) instructions/request (tree: callgrind_annotate --inclusive=yes $F)"
