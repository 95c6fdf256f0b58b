# PcieEmu: the only entry points people need.
#   make run    start the emulator with the embedded default machine
#   make test   build everything and run every test suite; ends with "N passed, N failed"
#   make bench  run the benchmarks
#   make clean  remove build outputs

SHELL := /bin/bash
DOTNET ?= dotnet
CONFIG ?= Release
RESULTS := $(CURDIR)/artifacts/test-results
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

.PHONY: all build test test-dotnet bench clean

all: build

build:
	$(DOTNET) build PcieEmu.sln -c $(CONFIG) -nologo -clp:ErrorsOnly

test: build
	@rm -rf $(RESULTS) && mkdir -p $(RESULTS)
	@$(MAKE) --no-print-directory test-dotnet || true
	@python3 .ci/summarize $(RESULTS)

test-dotnet:
	$(DOTNET) test PcieEmu.sln -c $(CONFIG) --no-build --logger "trx" --results-directory $(RESULTS)/dotnet -- RunConfiguration.TestSessionTimeout=1800000

bench:
	$(DOTNET) run -c Release --project tests/PcieEmu.Core.Benchmarks -- --filter '*'

clean:
	$(DOTNET) clean PcieEmu.sln -nologo -v q
	rm -rf artifacts
