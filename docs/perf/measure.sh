#!/bin/bash
# measure.sh CLUSTER OUTDIR: for a cluster started with
#   STRATA_ADMIN=127.0.0.1:0 STRATA_PPROF=127.0.0.1:6061 strata up --dir CLUSTER/c --oss 4 --mount CLUSTER/mnt
# and "strata setstripe -c 4 -S 1M CLUSTER/mnt/d" on a new directory: the MiB/s of a 512 MiB
# sequential 1 MiB write (end_fsync) and cold read (drop_caches) through the mount
# (3 runs each), the same on /var/tmp, then CPU and alloc profiles of the mount
# and the OSSes (PROF_S seconds each) while the workload repeats. Needs root
# (drop_caches), fio and curl.
set -u
D=$1; MNT=$D/mnt; OUT=$2; mkdir -p $OUT
PROF_S=${PROF_S:-12}
OSSADDRS=$(grep -h 'admin endpoint' $D/c/logs/oss*.log | tail -4 | sed 's/.*addr=//')
WCMD="fio --name=w --filename=$MNT/d/f0 --rw=write --bs=1M --size=512M --end_fsync=1 --ioengine=psync"
RCMD="fio --name=r --filename=$MNT/d/f0 --rw=read --bs=1M --size=512M --ioengine=psync"
bw() { grep -oE '(WRITE|READ): bw=[0-9.]+[KMG]iB/s' | sed 's/.*bw=//'; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
for i in 1 2 3; do rm -f $MNT/d/f0; cold; echo "write $i: $($WCMD | bw)"; cold; echo "read $i: $($RCMD | bw)"; done | tee $OUT/mibs.txt
rm -f /var/tmp/fio.test; cold
echo "disk write: $(fio --name=w --filename=/var/tmp/fio.test --rw=write --bs=1M --size=512M --end_fsync=1 --ioengine=psync | bw)" | tee -a $OUT/mibs.txt
cold
echo "disk read: $(fio --name=r --filename=/var/tmp/fio.test --rw=read --bs=1M --size=512M --ioengine=psync | bw)" | tee -a $OUT/mibs.txt
rm -f /var/tmp/fio.test
prof() { # prof NAME: profile mount and OSSes for PROF_S seconds
  curl -s -o $OUT/$1-mount.cpu "http://127.0.0.1:6061/debug/pprof/profile?seconds=$PROF_S" &
  local n=0; for a in $OSSADDRS; do curl -s -o $OUT/$1-oss$n.cpu "http://$a/debug/pprof/profile?seconds=$PROF_S" & n=$((n+1)); done
}
allocs() { curl -s -o $OUT/$1-mount.allocs "http://127.0.0.1:6061/debug/pprof/allocs"; local n=0; for a in $OSSADDRS; do curl -s -o $OUT/$1-oss$n.allocs "http://$a/debug/pprof/allocs"; n=$((n+1)); done; }
allocs wbase
prof write; end=$((SECONDS+PROF_S)); k=0
while [ $SECONDS -lt $end ]; do rm -f $MNT/d/f0; $WCMD > /dev/null; k=$((k+1)); done; wait; echo "write profile: $k runs" | tee -a $OUT/mibs.txt
allocs write
prof read; end=$((SECONDS+PROF_S)); k=0
while [ $SECONDS -lt $end ]; do cold; $RCMD > /dev/null; k=$((k+1)); done; wait; echo "read profile: $k runs" | tee -a $OUT/mibs.txt
allocs read
