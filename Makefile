# Strata: make build | make run | make test | make bench
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
TESTFLAGS ?= -count=1 -timeout 25m
TAGS    ?=

.PHONY: all deps build run test test-short bench vet vet-rdma clean

all: build

deps:
	@tools/install-deps.sh

# TAGS=rdma builds the RDMA transport in (cgo, libibverbs and librdmacm,
# which the binary then needs at run time); without it every hop is TCP.
build:
	$(GO) build -tags '$(TAGS)' -ldflags "$(LDFLAGS)" -o $(BIN)/strata ./tools/strata
	@ln -sf strata $(BIN)/lfs

# A local filesystem: embedded metadata store, 4 OSS, mounted at ~/.strata/mnt.
run: deps build
	$(BIN)/strata up $(UPFLAGS)

# Every test: unit tests, the metadata suite on both KV engines, the POSIX
# suite over a real FUSE mount, and end-to-end tests of real processes.
test: deps build vet-rdma
	$(GO) vet ./...
	STRATA_BIN=$(CURDIR)/$(BIN)/strata $(GO) test $(TESTFLAGS) ./...
	STRATA_BIN=$(CURDIR)/$(BIN)/strata $(GO) test -race $(TESTFLAGS) ./rpc/... ./oss/... ./mds/... ./client/...
	$(GO) test -race $(TESTFLAGS) ./rdma/...

test-short: build
	STRATA_BIN=$(CURDIR)/$(BIN)/strata $(GO) test -short $(TESTFLAGS) ./...

# Long runs (issue 7): the exerciser for three seeds of 1,000,000 steps
# (STRATA_FSX_SEEDS, STRATA_FSX_OPS) and 100 kill -9 cycles of each daemon
# (STRATA_CRASH_CYCLES). Hours on a small machine; make test runs short ones.
# SOAKARGS passes test flags, e.g. SOAKARGS='-args -fsx.allow-missing=fallocate'.
.PHONY: soak
soak: build
	STRATA_SOAK=1 STRATA_BIN=$(CURDIR)/$(BIN)/strata $(GO) test -count=1 -timeout 0 -v -run '^(TestExerciser|TestCrashLoop)$$' ./tests/ $(SOAKARGS)

# Benchmarks: Go benchmarks plus fio through a mount against the local disk.
# BenchmarkTransport reports latency and bandwidth per transport (tcp,
# rdma-fake; rdma-verbs with the rdma tag where an RDMA device exists).
bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./layout/... ./rpc/... ./mds/kv/...
	$(GO) test -tags rdma -run '^$$' -bench 'Transport/rdma-verbs' -benchmem -v ./rpc/
	$(GO) test -run '^$$' -bench 'CreatesPerMDT' -benchtime 5000x ./client/
	$(GO) test -run '^$$' -bench 'SharedDirCreates|SharedFileCloses' -benchtime 5000x ./mds/
	STRATA_BIN=$(CURDIR)/$(BIN)/strata tests/bench.sh
	STRATA_BIN=$(CURDIR)/$(BIN)/strata tests/stripebench.sh

vet: vet-rdma
	gofmt -l . | (! grep .)
	$(GO) vet ./...

# The cgo verbs compile only with the rdma tag (libibverbs-dev and
# librdmacm-dev); their conformance test runs where ibv_devices lists a
# device and skips, saying so, elsewhere.
vet-rdma:
	$(GO) vet -tags rdma ./rdma/... ./rpc/...
	$(GO) test -tags rdma $(TESTFLAGS) ./rdma/...

clean:
	rm -rf $(BIN)
