#!/usr/bin/env bash
# Striping across bandwidth-limited OSSes (issue 9): four OSSes, each in its
# own network namespace behind a veth pair whose both ends are rate-limited
# with tc (tbf) to the same bandwidth, as four OSS hosts on their own links;
# the MDS and the mount stay in the root namespace. Writes (with fsync) and
# reads a file striped over 1 OST and one striped over 4, and prints both
# rates and their ratio (the target: 4 stripes >= 3.5x one).
# Needs root (ip netns, tc). Env: STRATA_BIN (default bin/strata), RATE (tc
# rate per OSS link, default 400mbit), SIZE in MiB (default 256).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${STRATA_BIN:-bin/strata}")
RATE=${RATE:-400mbit}
SIZE=${SIZE:-256}
N=4
[ "$(id -u)" = 0 ] || { echo "stripebench: needs root (ip netns, tc)" >&2; exit 1; }
command -v tc >/dev/null || { echo "stripebench: tc not installed (apt-get install iproute2)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/strata-stripe.XXXXXX)
tag=sb$$
pids=()
cleanup() {
  if mountpoint -q "$work/mnt" 2>/dev/null; then fusermount3 -u "$work/mnt" 2>/dev/null || umount -l "$work/mnt" || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for i in $(seq 0 $((N - 1))); do
    ip link del "${tag}h$i" 2>/dev/null || true
    ip netns del "${tag}n$i" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

head -c 32 /dev/urandom | base64 >"$work/secret"
port=$((20000 + $$ % 20000))
"$BIN" format --kv "embedded:$work/kv" --fsname sb --stripe-count 1 --stripe-size 1M >/dev/null
"$BIN" mds --kv "embedded:$work/kv" --listen "0.0.0.0:$port" --secret-file "$work/secret" \
  >"$work/mds.log" 2>&1 &
pids+=($!)

for i in $(seq 0 $((N - 1))); do
  ns=${tag}n$i h=${tag}h$i n=${tag}p$i
  ip netns add "$ns"
  ip link add "$h" type veth peer name "$n"
  ip link set "$n" netns "$ns"
  ip addr add "10.77.$i.1/24" dev "$h"
  ip link set "$h" up
  ip -n "$ns" addr add "10.77.$i.2/24" dev "$n"
  ip -n "$ns" link set "$n" up
  ip -n "$ns" link set lo up
  tc qdisc add dev "$h" root tbf rate "$RATE" burst 256kb latency 50ms
  tc -n "$ns" qdisc add dev "$n" root tbf rate "$RATE" burst 256kb latency 50ms
  mkdir -p "$work/ost$i"
  ip netns exec "$ns" "$BIN" oss --mds "10.77.$i.1:$port" --listen "10.77.$i.2:7100" \
    --ost "$work/ost$i" --secret-file "$work/secret" >"$work/oss$i.log" 2>&1 &
  pids+=($!)
done

mkdir -p "$work/mnt"
"$BIN" mount --foreground --secret-file "$work/secret" "127.0.0.1:$port:/sb" "$work/mnt" >"$work/mount.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do mountpoint -q "$work/mnt" && break; sleep 0.1; done
mountpoint -q "$work/mnt" || { cat "$work/mount.log" "$work/mds.log"; exit 1; }
for _ in $(seq 1 300); do
  [ "$("$BIN" osts --json "$work/mnt" 2>/dev/null | grep -o '"state": *"active"' | wc -l)" -ge $N ] && break
  sleep 0.2
done

# rate CMD... -> MiB/s of SIZE MiB moved by CMD
rate() {
  local start end
  start=$(date +%s.%N)
  "$@" 2>/dev/null
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" -v m="$SIZE" 'BEGIN{printf "%.0f", m/(e-s)}'
}

printf '%-10s %14s %14s\n' "stripes" "write MiB/s" "read MiB/s"
declare -A W R
for c in 1 $N; do
  d="$work/mnt/c$c"
  mkdir "$d"
  "$BIN" setstripe -c "$c" -S 1M "$d"
  W[$c]=$(rate dd if=/dev/zero of="$d/f" bs=1M count="$SIZE" conv=fsync)
  R[$c]=$(rate dd if="$d/f" of=/dev/null bs=1M)
  printf '%-10s %14s %14s\n' "$c" "${W[$c]}" "${R[$c]}"
done
printf '%-10s %14.2f %14.2f   (target >= 3.5; each OSS link %s)\n' "$N/1" \
  "$(awk -v a="${W[$N]}" -v b="${W[1]}" 'BEGIN{print a/b}')" \
  "$(awk -v a="${R[$N]}" -v b="${R[1]}" 'BEGIN{print a/b}')" "$RATE"
