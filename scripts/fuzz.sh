#!/usr/bin/env bash
# Fuzzes the wire protocol (the `signaling` crate): every cargo-fuzz target in signaling/fuzz/
# (client_frame: WebSocket frames; rest_bodies: REST request bodies; text: the text functions),
# each for SECONDS_PER_TARGET seconds (default 60), one after the other.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# NOT part of CI: a run is long, random and needs libFuzzer; run it by hand after touching the
# decoder, the REST bodies or signaling::text. What the targets check: signaling/fuzz/README.md.
#
# - Installs cargo-fuzz (`cargo install cargo-fuzz`, a few minutes) when it is missing.
# - Works on the stable toolchain: cargo-fuzz passes nightly-only flags to rustc, which
#   RUSTC_BOOTSTRAP=1 allows. FUZZ_SANITIZER picks the sanitizer (default `none`, several times
#   faster here; `address` works too, for when unsafe code is involved; switching rebuilds).
# - FUZZ_KNOWN=name,name skips the checks of findings reported but not fixed yet, so that a run
#   can look for others (names and regression inputs: signaling/fuzz/README.md).
# - First replays signaling/fuzz/regressions/<target>/ (inputs that once crashed), then fuzzes
#   with the committed seeds (signaling/fuzz/corpus/<target>/, only read) plus a working corpus
#   in signaling/fuzz/target/corpus/<target>/ that grows from run to run and is not committed.
# - Exits non-zero if any regression still crashes or any target found a crash, timeout or
#   out-of-memory; the input is then in signaling/fuzz/artifacts/<target>/ (see the README for
#   `cargo fuzz tmin` and what to do with it). Logs: signaling/fuzz/target/fuzz-logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
case "$secs" in
  '' | *[!0-9]* | 0) echo "usage: $0 [SECONDS_PER_TARGET]  (a positive integer, default 60)" >&2; exit 2 ;;
esac

fuzz_dir=signaling/fuzz
sanitizer="${FUZZ_SANITIZER:-none}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: installing it with 'cargo install cargo-fuzz' (a few minutes)..."
  cargo install cargo-fuzz
fi

fuzz() { cargo fuzz "$1" --fuzz-dir "$fuzz_dir" -O --sanitizer "$sanitizer" "${@:2}"; }

echo "Building the fuzz targets (sanitizer: $sanitizer)..."
fuzz build
mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz_dir")
logs="$fuzz_dir/target/fuzz-logs"
mkdir -p "$logs"

failed=()
for t in "${targets[@]}"; do
  regressions="$fuzz_dir/regressions/$t"
  if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
    echo "== $t: replaying $regressions"
    if ! fuzz run "$t" "$regressions" -- -runs=0 >"$logs/$t.regressions.log" 2>&1; then
      echo "   a regression input still crashes: see $logs/$t.regressions.log"
      failed+=("$t (regression)")
    fi
  fi
done

for t in "${targets[@]}"; do
  work="$fuzz_dir/target/corpus/$t"
  seeds="$fuzz_dir/corpus/$t"
  mkdir -p "$work" "$seeds"
  echo "== $t: fuzzing for ${secs}s (log: $logs/$t.log)"
  # The first corpus directory is the one libFuzzer writes new inputs to: the working one.
  if fuzz run "$t" "$work" "$seeds" -- \
      -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$logs/$t.log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed+=("$t")
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -n 1)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$logs/$t.log" | tail -n 1 || true)
  echo "   $status: ${execs:-?} executions, ${rate:-?}/s, ${cov:-no coverage line}"
  if [ "$status" = CRASH ]; then
    grep -m1 -A2 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$logs/$t.log" | sed 's/^/   | /' || true
    ls "$fuzz_dir/artifacts/$t" 2>/dev/null | sed "s|^|   artifact: $fuzz_dir/artifacts/$t/|" || true
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "Crashes in: ${failed[*]}. Minimize with:"
  echo "  RUSTC_BOOTSTRAP=1 cargo fuzz tmin --fuzz-dir $fuzz_dir -O --sanitizer $sanitizer <target> <artifact>"
  exit 1
fi
echo "No crash in ${#targets[@]} targets."
