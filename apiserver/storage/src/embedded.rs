//! The embedded backend (redb). Being written.
