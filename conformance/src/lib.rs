//! Placeholder (black-box conformance tests come later).
