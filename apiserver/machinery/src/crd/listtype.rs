//! list types
