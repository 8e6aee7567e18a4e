//! Pure API machinery for ferrokube.
//!
//! Everything here is plain data in, plain data out: no IO, no async runtime (DESIGN invariant
//! 1), so it is testable with values alone. The server crate wires it to HTTP and storage.
//!
//! Where to start reading: [`resources`] (the one table of built-in resources that drives
//! routes, discovery and OpenAPI), [`request_info`] (a request path parsed once), [`status`]
//! (every error a client sees), [`selectors`] (label and field selectors).

pub mod admission_policy;
pub mod cel;
pub mod continue_token;
pub mod conversion;
pub mod crd;
pub mod customresource;
pub mod decode;
pub mod defaults;
pub mod discovery;
pub mod limits;
pub mod managedfields;
pub mod media;
pub mod openapi;
pub mod patch;
pub mod printers;
pub mod protobuf;
pub mod quota;
pub mod request_info;
pub mod resources;
pub mod selectors;
pub mod status;
pub mod validation;
