"""Scripts beside the package (benchmarks, stress and crash tests); they use only its public API."""
