"""Speed benchmarks (issue 9); run as scripts, not imported by the library."""
