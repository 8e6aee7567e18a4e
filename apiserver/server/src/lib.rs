//! Placeholder until the lead lands the API server crate.
