#!/bin/bash
# Instructions per usage record of a control-plane binary's ingestion (callgrind over a whole
# switchyard-ingest-bench run: start-up included, the same for every binary, so compare
# binaries at the same RECORDS and BATCH rather than reading the figure alone).
# Usage: ingest-instructions.sh SWITCHYARD_BIN NAME [RECORDS] [BATCH] [SPREAD]
# (SPREAD: batch sizes vary by up to that many records either side of BATCH, as the gateway's do)
# (INGEST_ARGS: more switchyard-ingest-bench flags, e.g. --streamed)
# (needs switchyard-ingest-bench beside SWITCHYARD_BIN or in $INGEST_BENCH)
set -uo pipefail
BIN=$(realpath "$1"); NAME=$2; RECORDS=${3:-10000}; BATCH=${4:-250}; SPREAD=${5:-0}
IB=${INGEST_BENCH:-$(dirname "$BIN")/switchyard-ingest-bench}
D=${LAB:-/tmp/switchyard-lab}/ingest-$NAME; rm -rf "$D"; mkdir -p "$D"
# The bench kills the control plane at the end, before callgrind could write its profile:
# a wrapper in --bin-dir runs it under callgrind, and the profile is dumped every 0.2 s.
printf '#!/bin/bash\nexec valgrind --tool=callgrind --callgrind-out-file=%s/cg.out %s "$@" 2>%s/vg.log\n' \
  "$D" "$BIN" "$D" > "$D/switchyard"; chmod +x "$D/switchyard"
"$IB" --records "$RECORDS" --batch "$BATCH" --spread "$SPREAD" ${INGEST_ARGS:-} --bin-dir "$D" > "$D/bench.log" 2>&1 &
BENCH=$!
sleep 2
while P=$(pgrep -f "valgrind.*$D/cg.out" | head -1); [ -n "$P" ]; do
  callgrind_control -d "$P" > /dev/null 2>&1; sleep 0.2
done
wait $BENCH
T=0
for f in "$D"/cg.out.*; do
  t=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
  T=$((T + ${t:-0}))
done
echo "$NAME: $RECORDS records at batch $BATCH ± $SPREAD: $T instructions, $((T / RECORDS)) per record (profiles: $D/cg.out.*)"
