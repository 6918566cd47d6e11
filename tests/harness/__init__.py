"""The test harness, importable by the tests, the benchmarks and anyone adding a family or a reader:
tiny seeded models of every family (`tests.harness.models`: add a family's tiny config there and the
conformance suite in tests/families runs on it) and synthetic stores written without the job
(`tests.harness.synthetic_store`)."""
