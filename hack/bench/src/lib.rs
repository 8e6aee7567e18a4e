//! Placeholder (benchmarks come later).
