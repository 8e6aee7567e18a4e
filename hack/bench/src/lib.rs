//! Placeholder crate; filled in on another branch.
