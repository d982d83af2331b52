"""Speed benchmarks; run as scripts, not imported by the library."""
