# PcieEmu: the only entry points people need.
#   make run    start the emulator with the embedded default machine
#   make test   build everything and run every test suite; ends with "N passed, N failed"
#   make bench  run the load generator (pcie-emu bench) and the Core benchmarks
#   make clean  remove build outputs

SHELL := /bin/bash
DOTNET ?= dotnet
CONFIG ?= Release
RESULTS := $(CURDIR)/artifacts/test-results
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

.PHONY: all build run test test-dotnet test-buf test-clients clients bench bench-wire bench-core clean

# buf (protobuf linter) from npm, installed locally under .tools/ (gitignored).
BUF_VERSION := 1.75.0
BUF := $(CURDIR)/.tools/node_modules/.bin/buf

all: build

build:
	$(DOTNET) build PcieEmu.sln -c $(CONFIG) -nologo -clp:ErrorsOnly

run:
	$(DOTNET) run --project src/PcieEmu.Server -c Release -- serve

test: build
	@rm -rf $(RESULTS) && mkdir -p $(RESULTS)
	@$(MAKE) --no-print-directory test-dotnet || true
	@$(MAKE) --no-print-directory test-buf || true
	@$(MAKE) --no-print-directory test-clients || true
	@python3 .ci/summarize $(RESULTS)

# Every client (clients/<lang>/test.sh RESULTS_DIR) builds itself, starts its own server, runs its
# tests and writes client-<lang>.count, or client-<lang>.error when its toolchain is missing.
CLIENTS := python cpp typescript go
test-clients:
	@mkdir -p $(RESULTS)/clients
	@export PCIEEMU_SERVER_DLL=$(CURDIR)/src/PcieEmu.Server/bin/$(CONFIG)/net10.0/pcie-emu.dll; \
	  for c in $(CLIENTS); do echo "== client $$c"; bash clients/$$c/test.sh $(RESULTS)/clients || true; done

# Build and test the clients alone (needs the server built: make build).
clients: build
	@rm -rf $(RESULTS)/clients
	@$(MAKE) --no-print-directory test-clients
	@python3 .ci/summarize $(RESULTS)/clients

# buf lint counts as one suite: "1 0" when clean, "0 1" when not; a buf that cannot be installed is an error.
test-buf:
	@mkdir -p $(RESULTS)/buf
	@if [ ! -x $(BUF) ]; then \
	  npm install --prefix .tools --no-audit --no-fund --loglevel=error @bufbuild/buf@$(BUF_VERSION) >/dev/null 2>&1 || \
	    { echo "buf could not be installed with npm (npm install --prefix .tools @bufbuild/buf@$(BUF_VERSION))" > $(RESULTS)/buf/buf-lint.error; exit 1; }; \
	fi
	@if $(BUF) lint; then echo "1 0" > $(RESULTS)/buf/buf-lint.count; echo "buf lint: clean"; \
	  else echo "0 1" > $(RESULTS)/buf/buf-lint.count; echo "buf lint: FAILED"; exit 1; fi

test-dotnet:
	$(DOTNET) test PcieEmu.sln -c $(CONFIG) --no-build --logger "trx" --results-directory $(RESULTS)/dotnet -- RunConfiguration.TestSessionTimeout=1800000

bench: bench-wire bench-core

# The wire load generator: starts an in-process server on a free TCP port and a Unix socket.
bench-wire:
	$(DOTNET) run --project src/PcieEmu.Server -c Release -- bench

bench-core:
	$(DOTNET) run -c Release --project tests/PcieEmu.Core.Benchmarks -- --filter '*'

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
