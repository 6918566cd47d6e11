"""The test harness, importable by the tests, the benchmarks and anyone adding a family or a reader:
synthetic stores written without the job (`tests.harness.synthetic_store`)."""
