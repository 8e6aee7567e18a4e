//! Placeholder for the benchmark harness.
