//! TODO(helper): see the module plan in the crate docs.
