# PcieEmu: the only entry points people need.
#   make run    start the emulator with the embedded default machine
#   make test   install missing Debian packages (make deps), build everything, run every expected
#               test suite (tests/suites.txt), print a per-suite table; ends with "N passed, N failed"
#   make bench  run the load generator (pcie-emu bench) and the Core benchmarks
#   make bench-peer  per-access cost beside libvfio-user and the socket floor (docs/performance.md)
#   make web    rebuild the web view's bundle (web/ -> src/PcieEmu.Server/Web/wwwroot, committed) with npm ci + esbuild
#   make bench-iomodels  the I/O-model lab (docs/iomodels.md): table and chart into docs/iomodels/
#   make clean  remove build outputs

SHELL := /bin/bash
DOTNET ?= dotnet
CONFIG ?= Release
RESULTS := $(CURDIR)/artifacts/test-results
SUITES_FILE := tests/suites.txt
export DOTNET CONFIG
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
# The client suites use the server this Makefile built instead of building it again.
export PCIEEMU_SERVER_DLL := $(CURDIR)/src/PcieEmu.Server/bin/$(CONFIG)/net10.0/pcie-emu.dll

.PHONY: all deps build run test suite clients bench bench-wire bench-core clean bench-iomodels web web-screenshots

all: build

# The Debian packages the suites need (apt-packages.txt, clients/*/apt-packages.txt,
# tests/*/apt-packages.txt): installed with apt-get as root, else the command to run is printed.
deps:
	@.ci/deps

build:
	$(DOTNET) build PcieEmu.sln -c $(CONFIG) -nologo -clp:ErrorsOnly

run:
	$(DOTNET) run --project src/PcieEmu.Server -c Release -- serve

# Every suite of tests/suites.txt runs (a failing one does not stop the others), then
# .ci/summarize prints the table and the last line and fails the run if anything failed.
test: deps build
	@rm -rf $(RESULTS) && mkdir -p $(RESULTS)
	@.ci/run-suites $(RESULTS) $(SUITES_FILE)

# Some suites only, e.g. make suite S="client-go pipeline" (needs make build first).
suite:
	@.ci/run-suites $(RESULTS) $(SUITES_FILE) $(S)

# The four language clients alone (each against a server it starts).
clients: deps build
	@.ci/run-suites $(RESULTS) $(SUITES_FILE) client-python client-cpp client-go client-typescript

bench: bench-wire bench-core

# The web view's page: web/src bundled by esbuild (npm ci from the committed package-lock.json) into the
# server's embedded files. The bundle is committed, so `make run` and `make test` need no npm for it.
web:
	cd web && npm ci --no-audit --no-fund && node build.mjs

# The screenshots of docs/web.md, taken by the browser tests (headless Chromium) into docs/web/.
web-screenshots: build
	PCIEEMU_WEB_SCREENSHOTS=$(CURDIR)/docs/web $(DOTNET) test tests/PcieEmu.Browser.Tests -c $(CONFIG) --no-build

# The wire load generator: starts an in-process server on a free TCP port and a Unix socket.
bench-wire:
	$(DOTNET) run --project src/PcieEmu.Server -c Release -- bench

bench-core:
	$(DOTNET) run -c Release --project tests/PcieEmu.Core.Benchmarks -- --filter '*'

# Per-access cost, one run, alternating: the socket floor, libvfio-user's sample server (built from
# the QEMU source `make vm-test` uses, cached), PcieEmu over gRPC, vfio-user and the shared-memory
# ring (tests/bench-peer/run.sh; BENCH_ROUNDS / BENCH_OPS override 3 rounds of 20000 ops).
.PHONY: bench-peer
bench-peer:
	@bash tests/bench-peer/run.sh

# The I/O-model lab: the same guest workload under emulation, paravirtual, direct assignment and
# SR-IOV, 1..8 guests; the JIT compiles fully up front so no row is timed at tier 0.
bench-iomodels:
	@mkdir -p docs/iomodels
	DOTNET_TieredCompilation=0 $(DOTNET) run --project src/PcieEmu.Server -c Release -- iomodels --frames 10000 \
		--chart $(CURDIR)/docs/iomodels/iomodels.svg | tee docs/iomodels/table.txt

clean:
	$(DOTNET) clean PcieEmu.sln -nologo -v q
	rm -rf artifacts .tools

# The VM test (tests/vm/README.md): QEMU (built once, cached outside the clone) boots a Linux guest
# whose unmodified igbvf driver drives VF0 served by `pcie-emu serve --vfio-user`; writes
# vm-test.count, or vm-test.error, or vm-test.skip (no QEMU >= 10.1 source downloadable).
.PHONY: vm-test
vm-test:
	@mkdir -p $(RESULTS)/vm
	@bash tests/vm/vm-test.sh $(RESULTS)/vm
