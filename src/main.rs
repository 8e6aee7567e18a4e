//! Placeholder binary entry point.

fn main() {}
