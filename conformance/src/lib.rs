//! Placeholder for the black-box conformance tests.
