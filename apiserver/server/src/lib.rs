//! Placeholder so the workspace loads; the lead writes the real crate.
