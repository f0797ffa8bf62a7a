#!/usr/bin/env bash
# Benchmarks through a real mount next to the local disk, in one run:
#  - 1 GiB sequential write and cold read with fio, buffered and O_DIRECT,
#    on a 4-way striped directory of a local 4-OSS cluster vs a local directory;
#  - create/stat/unlink of 10,000 files (tests/mdbench) on both;
#  - iperf3 over loopback (one TCP stream), the network the data path uses;
#  - strata bench (2 threads: big files, a strided shared file in 47,008-byte
#    records, small files, create/stat/readdir/unlink in own directories and
#    create/unlink in one shared directory) on the local disk, on the FUSE
#    ceiling (tests/fuseceiling: a passthrough FUSE mount of tmpfs with the
#    kernel's caches on for a day) and on Strata.
# Prints each figure and its ratio to the baselines of the same run, then the
# shared-file figures against the sequential ones of the same filesystem.
# Env: STRATA_BIN (default bin/strata), SIZE (default 1g), FILES (default 10000),
# BIG (strata bench file size, default 512M), META (files per thread, 10000).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${STRATA_BIN:-bin/strata}
SIZE=${SIZE:-1g}
FILES=${FILES:-10000}
BIG=${BIG:-512M}
META=${META:-10000}
work=$(mktemp -d /var/tmp/strata-bench.XXXXXX)
shm=$(mktemp -d /dev/shm/strata-ceiling.XXXXXX)
up_pid=""
ceil_pid=""
cleanup() {
  if [ -n "$ceil_pid" ]; then kill -INT "$ceil_pid" 2>/dev/null || true; wait "$ceil_pid" 2>/dev/null || true; fi
  if [ -n "$up_pid" ]; then kill -INT "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; fi
  rm -rf "$work" "$shm"
}
trap cleanup EXIT
command -v fio >/dev/null || { echo "bench: fio not installed (apt-get install fio)" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "bench: iperf3 not installed (apt-get install iperf3)" >&2; exit 1; }
go build -o "$work/mdbench" ./tests/mdbench

"$BIN" up --dir "$work/cluster" --oss 4 --mount "$work/mnt" >"$work/up.out" 2>&1 &
up_pid=$!
for _ in $(seq 1 600); do grep -q '^ready:' "$work/up.out" && break; sleep 0.1; done
grep '^ready:' "$work/up.out" || { cat "$work/up.out"; exit 1; }
mkdir -p "$work/mnt/bench" "$work/local"
"$BIN" setstripe -c 4 -S 1M "$work/mnt/bench"

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

# fio_bw DIR RW DIRECT -> MiB/s
fio_bw() {
  local dir=$1 rw=$2 direct=$3
  [ "$rw" = read ] && drop_caches
  fio --name=seq --directory="$dir" --filename=fio.dat --rw="$rw" --bs=1m --size="$SIZE" \
      --direct="$direct" --ioengine=psync --end_fsync=1 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; k="write" if j["write"]["bw_bytes"] else "read"; print("%.0f" % (j[k]["bw_bytes"]/1048576))'
}

printf '%-28s %12s %12s %8s\n' "test" "local" "strata" "ratio"
for direct in 0 1; do
  mode=buffered; [ "$direct" = 1 ] && mode=O_DIRECT
  for rw in write read; do
    l=$(fio_bw "$work/local" "$rw" "$direct")
    s=$(fio_bw "$work/mnt/bench" "$rw" "$direct")
    printf '%-28s %9s MiB/s %9s MiB/s %8.2f\n' "seq $rw $SIZE ($mode)" "$l" "$s" "$(awk -v a="$s" -v b="$l" 'BEGIN{print a/b}')"
  done
  rm -f "$work/local/fio.dat" "$work/mnt/bench/fio.dat"
done

# The network baseline: one TCP stream over loopback for 3 s.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
iperf3 -s -1 -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
iperf_pid=$!
net=""
for _ in $(seq 1 50); do
  if net=$(iperf3 -c 127.0.0.1 -p "$port" -t 3 -J 2>/dev/null |
      python3 -c 'import json,sys; print("%.0f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/8/1048576))' 2>/dev/null); then
    break
  fi
  sleep 0.1
done
wait "$iperf_pid" 2>/dev/null || true
printf '%-28s %9s MiB/s\n' "iperf3 loopback (1 stream)" "${net:-?}"

"$work/mdbench" -dir "$work/local/md" -n "$FILES" -json >"$work/md.local"
"$work/mdbench" -dir "$work/mnt/md" -n "$FILES" -json >"$work/md.strata"
python3 - "$work/md.local" "$work/md.strata" <<'PY'
import json, sys
local = json.load(open(sys.argv[1])); strata = json.load(open(sys.argv[2]))
for l, s in zip(local, strata):
    print("%-28s %8.0f op/s %8.0f op/s %8.2f" % ("%s %d files" % (l["phase"], l["files"]), l["ops_per_sec"], s["ops_per_sec"], s["ops_per_sec"] / l["ops_per_sec"]))
PY

# strata bench on the local disk, the FUSE ceiling and Strata, side by side.
go build -o "$work/fuseceiling" ./tests/fuseceiling
mkdir -p "$work/ceiling"
"$work/fuseceiling" "$shm" "$work/ceiling" >"$work/ceiling.out" 2>&1 &
ceil_pid=$!
for _ in $(seq 1 100); do grep -q '^ready' "$work/ceiling.out" && break; sleep 0.1; done
bench() {
  if ! "$BIN" bench --json --threads 2 --big-file-size "$BIG" --small-files 1000 --meta-ops "$META" "$1" 2>"$work/bench.err"; then
    echo "bench: strata bench $1 failed:" >&2
    grep -v ': [0-9]*/[0-9]*$' "$work/bench.err" | tail -5 >&2
    exit 1
  fi
}
bench "$work/local" >"$work/b.local"
bench "$work/ceiling" >"$work/b.ceiling"
bench "$work/mnt/bench" >"$work/b.strata"
echo
python3 - "$work/b.local" "$work/b.ceiling" "$work/b.strata" <<'PY'
import json, sys
local, ceil, strata = (json.load(open(p))["results"] for p in sys.argv[1:4])
print("%-18s %14s %14s %14s %10s %10s" % ("strata bench x2", "local disk", "FUSE ceiling", "strata", "/ceiling", "/disk"))
for l, c, s in zip(local, ceil, strata):
    print("%-18s %10.0f %-3s %10.0f %-3s %10.0f %-3s %10.2f %10.2f" % (s["name"], l["value"], "", c["value"], "", s["value"], "",
          s["value"] / c["value"], s["value"] / l["value"]))
print("(units: %s)" % ", ".join("%s %s" % (r["name"], r["unit"]) for r in strata))
print()
print("%-18s %14s %14s %14s" % ("shared / sequential", "local disk", "FUSE ceiling", "strata"))
for op in ("write", "read"):
    row = []
    for res in (local, ceil, strata):
        v = {r["name"]: r["value"] for r in res}
        row.append(v["shared file " + op] / v["big file " + op])
    print("%-18s %14.2f %14.2f %14.2f" % ("strided " + op, *row))
PY
