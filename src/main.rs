//! Placeholder so the workspace resolves.
fn main() {}
