//! Placeholder crate (watch-cache branch).
