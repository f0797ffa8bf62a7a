#!/bin/bash
# meta.sh CLUSTER OUTDIR [FILES]: metadata and small-file phases through the
# mount of a cluster started with
#   STRATA_ADMIN=127.0.0.1:0 STRATA_PPROF=127.0.0.1:6061 strata up --dir CLUSTER/c --oss 4 --mount CLUSTER/mnt
# Two processes, each in its own directory, FILES files each (default 5000):
# create (empty), small write (4 KiB, create+write+close), stat, small read
# (open+read+close), unlink. For each phase it prints ops/s and the CPU time
# per operation of the MDS, the OSSes, the mount and the rest (the two
# workers with their system time in the FUSE kernel), and saves CPU
# profiles (pprof top 25) of the MDS and the mount taken over the phase.
# Needs python3, curl and go (for go tool pprof).
set -u
D=$1; MNT=$D/mnt; OUT=$2; N=${3:-5000}; mkdir -p $OUT
BIN=$(dirname "$0")/../../bin/strata
MDSADDR=$(grep -h 'admin endpoint' $D/c/logs/mds*.log | tail -1 | sed 's/.*addr=//')
UP=$(pgrep -f "strata up --dir $D/c" | head -1)
kids() { for t in /proc/$UP/task/*; do cat $t/children; done; }
ticks() { # ticks ROLE: utime+stime of up's children whose command has ROLE
  local s=0; for p in $(kids); do tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q -- "$1" && s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
cat > $OUT/phase.py <<'PY'
import os, sys
op, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = b"x" * 4096
os.makedirs(d, exist_ok=True)
for i in range(n):
    p = os.path.join(d, "f%d" % i)
    if op == "create":
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
    elif op == "write":
        with open(p + ".s", "wb") as f: f.write(data)
    elif op == "stat":
        os.stat(p)
    elif op == "read":
        with open(p + ".s", "rb") as f: f.read()
    elif op == "unlink":
        os.unlink(p); os.unlink(p + ".s")
PY
printf '%-8s %9s %9s %9s %9s %9s   (CPU us per op)\n' phase ops/s mds oss mount rest | tee $OUT/split.txt
for ph in create write stat read unlink; do
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
  m0=$(ticks " mds "); o0=$(ticks " oss "); c0=$(ticks " mount "); a0=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  curl -s -o $OUT/$ph-mds.cpu "http://$MDSADDR/debug/pprof/profile?seconds=2" &
  curl -s -o $OUT/$ph-mount.cpu "http://127.0.0.1:6061/debug/pprof/profile?seconds=2" &
  t0=$(date +%s.%N)
  python3 $OUT/phase.py $ph $MNT/meta/a $N & python3 $OUT/phase.py $ph $MNT/meta/b $N; wait %3 2>/dev/null; wait
  t1=$(date +%s.%N)
  m1=$(ticks " mds "); o1=$(ticks " oss "); c1=$(ticks " mount "); a1=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  ops=$((2 * N)); [ $ph = unlink ] && ops=$((4 * N))
  awk -v ph=$ph -v ops=$ops -v t=$(echo "$t1 - $t0" | bc) -v m=$((m1-m0)) -v o=$((o1-o0)) -v c=$((c1-c0)) -v a=$((a1-a0)) \
    'BEGIN { us = 10000 / ops; printf "%-8s %9.0f %9.0f %9.0f %9.0f %9.0f\n", ph, ops/t, m*us, o*us, c*us, (a-m-o-c)*us }' | tee -a $OUT/split.txt
  for w in mds mount; do go tool pprof -top -nodecount 25 $BIN $OUT/$ph-$w.cpu > $OUT/$ph-$w.txt 2>/dev/null; done
done
echo "(unlink counts the 4 KiB file too: two unlinks per file)" | tee -a $OUT/split.txt
