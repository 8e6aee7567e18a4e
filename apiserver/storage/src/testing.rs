//! The shared backend test suite. Being written.
