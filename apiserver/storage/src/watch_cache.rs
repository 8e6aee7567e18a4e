//! The watch cache. Being written.
