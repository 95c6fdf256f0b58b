using BenchmarkDotNet.Running;

// Every benchmark class in this assembly; pick with --filter (e.g. --filter '*Config*').
if (args is ["--iommu-interleaved"]) PcieEmu.Core.Benchmarks.IommuBenchmarks.RunInterleaved();
else BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
