//! Conformance tests: the real ferrokube binary (`target/release/ferrokube server`) driven by stock
//! kubectl v1.35.2 and kube-rs. Each test starts its own server on loopback
//! ([`ferrokube_conformance::TestServer`]), so tests run in parallel.
//!
//! Modules: `discovery` (version, api-versions, api-resources, explain), `kubectl_crud` (apply of
//! every manifest, tables, output formats, describe, delete, error messages), `kubectl_list`
//! (selectors, chunking, all namespaces, watch), `kube_rs` (typed CRUD and the runtime watcher),
//! `durability` (graceful restart and SIGKILL during writes).

mod discovery;
mod durability;
mod helm;
mod kube_rs;
mod kubectl_crud;
mod kubectl_list;
mod ssa;
mod util;
