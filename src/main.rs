//! ferrokube binary (placeholder in the watch-cache branch).

fn main() {}
