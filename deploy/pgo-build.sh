#!/bin/bash
# Profile-guided (PGO) release build of the two Switchyard binaries.
#
#   deploy/pgo-build.sh [OUT_DIR]        (default: <target dir>/pgo)
#
# 1. builds `switchyard-bench` (load generator and mock provider) in release,
# 2. builds instrumented `switchyard` and `switchyard-gateway` (-Cprofile-generate),
# 3. trains them: `switchyard-bench --quick --no-peers` runs every benchmark scenario through
#    them (plain, streamed and governed requests, fixed rates, saturation; the control plane
#    ingesting the usage; the control-plane outage scenario is --full only) against the bench
#    mock, all on loopback,
# 4. merges the profiles with the toolchain's llvm-profdata (rustup component llvm-tools),
# 5. builds both again with -Cprofile-use and copies them to OUT_DIR.
#
# Measured on the 2-core lab: see README "Performance" (instructions per request, c=1 added
# latency and CPU per request, PGO build against the plain release build). Takes about three
# release builds of the two binaries plus two minutes of training.
# The explicit --target keeps RUSTFLAGS off build scripts and proc macros, which would
# otherwise write profiles of themselves during the build.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-$PWD/target}
OUT=${1:-$T/pgo}
HOST=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA=$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata
WORK=$T/pgo-work
step() { printf '\n[pgo %s] %s\n' "$(date +%T)" "$*"; }

if [ ! -x "$PROFDATA" ]; then
  step "installing llvm-tools (llvm-profdata matching rustc's LLVM)"
  rustup component add llvm-tools
fi
rm -rf "$WORK" && mkdir -p "$WORK/profiles" "$WORK/bin" "$OUT"

BINS=(-p switchyard-control-plane -p switchyard-gateway --bin switchyard --bin switchyard-gateway)

step "1/5 switchyard-bench (the training's mock provider and load generator)"
cargo build --release --locked -p switchyard-e2e --bin switchyard-bench

step "2/5 instrumented control plane and gateway"
RUSTFLAGS="-Cprofile-generate=$WORK/profiles" \
  cargo build --release --locked "${BINS[@]}" --target "$HOST" --target-dir "$T/pgo-generate"
cp "$T/pgo-generate/$HOST/release/"{switchyard,switchyard-gateway} "$WORK/bin/"

step "3/5 training: switchyard-bench --quick --no-peers through the instrumented binaries"
"$T/release/switchyard-bench" --quick --no-peers --bin-dir "$WORK/bin" --out "$WORK/bench"
shopt -s nullglob
raw=("$WORK"/profiles/*.profraw)
# One profile per binary, written when it exits; a binary the bench had to SIGKILL writes none.
if [ ${#raw[@]} -eq 0 ]; then
  echo "pgo: the training wrote no profile (did the binaries exit cleanly on SIGTERM?)" >&2
  exit 1
elif [ ${#raw[@]} -lt 2 ]; then
  echo "pgo: warning: one profile for two binaries; one of them will be built without a profile" >&2
fi

step "4/5 merging ${#raw[@]} profile(s)"
"$PROFDATA" merge -o "$WORK/switchyard.profdata" "${raw[@]}"

step "5/5 control plane and gateway built with the profile"
RUSTFLAGS="-Cprofile-use=$WORK/switchyard.profdata" \
  cargo build --release --locked "${BINS[@]}" --target "$HOST" --target-dir "$T/pgo-use"
cp "$T/pgo-use/$HOST/release/"{switchyard,switchyard-gateway} "$OUT/"
step "done: $OUT/switchyard and $OUT/switchyard-gateway (training report: $WORK/bench)"
