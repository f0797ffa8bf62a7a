#!/usr/bin/env bash
# Installs what building, mounting and testing Strata need on Debian/Ubuntu:
# fuse3 (fusermount3, /dev/fuse), attr (getfattr for tests), acl (setfacl and
# getfacl for the POSIX ACL tests), fio and iperf3 (benchmarks), mpich (MPI-IO tests),
# libibverbs-dev and librdmacm-dev (the RDMA transport, built with -tags rdma),
# rdma-core and ibverbs-utils (ibv_devices, to see what RDMA hardware there is).
# Go modules are fetched by the go command itself; versitygw (the S3 server
# of the HSM tests) is built with it into ~/.cache/strata/bin.
# Run as root, or it prints the command to run.
set -euo pipefail
pkgs=(fuse3 attr acl fio iperf3 mpich libmpich-dev libibverbs-dev librdmacm-dev rdma-core ibverbs-utils)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v go >/dev/null 2>&1; then
  echo "install-deps: Go 1.26 or newer is required: https://go.dev/doc/install" >&2
  exit 1
fi
# versitygw, the S3 server the HSM tests run on loopback: built once (about
# 2.5 min) into a cache the tests look in, and kept there.
vgw_dir="${STRATA_TOOLS_DIR:-$HOME/.cache/strata/bin}"
if [ ! -x "$vgw_dir/versitygw" ] && ! command -v versitygw >/dev/null 2>&1; then
  echo "install-deps: building versitygw v1.8.0 into $vgw_dir (the S3 server of the HSM tests)"
  mkdir -p "$vgw_dir"
  if ! GOBIN="$vgw_dir" GOFLAGS=-mod=mod go install github.com/versity/versitygw/cmd/versitygw@v1.8.0; then
    echo "install-deps: could not build versitygw; the S3 HSM tests will be skipped" >&2
  fi
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
if [ -z "${STRATA_APT_UPDATED:-}" ]; then
  apt-get update -qq
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
