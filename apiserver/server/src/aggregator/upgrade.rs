//! Upgrade requests through an APIService (exec/attach/port-forward style `Connection: Upgrade`,
//! SPDY or WebSocket), as upstream's `UpgradeAwareHandler` serves them for the aggregator: the
//! request goes to the backend with its `Connection`/`Upgrade` headers; when the backend answers
//! `101 Switching Protocols`, the client gets that answer and both upgraded connections are
//! spliced, bytes copied both ways until either side closes. Any other answer is passed back
//! as it is (clients fall back to another protocol on a failed upgrade).
//!
//! Bounded: at most [`MAX_TUNNELS`] spliced connections at once (more are refused with 429
//! before the backend is called), each copying through two fixed 8 KiB buffers.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Spliced connections open at once, at most.
pub const MAX_TUNNELS: usize = 1024;

/// The copy buffer of each direction.
const BUFFER: usize = 8 * 1024;

/// Whether a request asks to switch protocols (upstream `httpstream.IsUpgradeRequest`: a
/// `Connection` header naming `upgrade`).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("upgrade"))
}

/// The headers that carry an upgrade (hop-by-hop otherwise): forwarded on an upgrade request
/// and on a `101` answer.
pub fn upgrade_header(name: &HeaderName) -> bool {
    name == header::CONNECTION || name == header::UPGRADE
}

/// The slots for spliced connections.
#[derive(Clone)]
pub struct Tunnels(Arc<Semaphore>);

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels(Arc::new(Semaphore::new(MAX_TUNNELS)))
    }
}

impl Tunnels {
    /// A slot, or `None` when [`MAX_TUNNELS`] are open.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }

    /// Slots in use.
    pub fn in_use(&self) -> usize {
        MAX_TUNNELS - self.0.available_permits()
    }
}

/// Splices the client's and the backend's upgraded connections once both upgrades complete;
/// the slot is held until the copy ends.
pub fn splice(
    client: OnUpgrade,
    backend: OnUpgrade,
    slot: OwnedSemaphorePermit,
    apiservice: String,
) {
    tokio::spawn(async move {
        let _slot = slot;
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(%apiservice, error = %e, "upgrade through the aggregator failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut backend, BUFFER, BUFFER)
            .await
        {
            Ok((up, down)) => {
                tracing::debug!(%apiservice, up, down, "upgraded connection closed");
            }
            Err(e) => {
                tracing::debug!(%apiservice, error = %e, "upgraded connection ended");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_requests_are_recognised_as_upstream_does() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade_request(&h));
        h.insert(header::CONNECTION, "keep-alive".parse().expect("v"));
        assert!(!is_upgrade_request(&h));
        h.append(header::CONNECTION, "Upgrade".parse().expect("v"));
        assert!(is_upgrade_request(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "keep-alive, upgrade".parse().expect("v"),
        );
        assert!(is_upgrade_request(&h));
    }

    #[test]
    fn slots_are_bounded_and_come_back() {
        let t = Tunnels::default();
        let held: Vec<_> = (0..MAX_TUNNELS).map(|_| t.try_acquire()).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(t.try_acquire().is_none(), "no slot beyond the bound");
        drop(held);
        assert_eq!(t.in_use(), 0);
        assert!(t.try_acquire().is_some());
    }
}
