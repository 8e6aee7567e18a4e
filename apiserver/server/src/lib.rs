//! ferrokube API server (placeholder in the watch-cache branch; the lead writes this crate).
