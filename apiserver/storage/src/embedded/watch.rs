//! Watch streams: the retained history from a snapshot, then live events from the writer's
//! broadcast, with no gap and no duplicate.
//!
//! The watcher subscribes to the broadcast *before* it reads the snapshot, so every event
//! committed after the snapshot is in its receiver; live events at or below the snapshot's
//! revision are skipped. The broadcast ring is the per-watcher buffer: writers never wait for
//! a watcher. A watcher that falls more than `watch_buffer` events behind gets one
//! `Err(StorageError::Compacted { requested: <last revision it saw>, .. })` and the stream
//! ends; the consumer must re-list (as a client does on 410 Gone).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use futures::StreamExt;
use tokio::sync::broadcast;

use super::Shared;
use crate::{Event, Result, Revision, StorageError, WatchStream};

struct Live {
    rx: broadcast::Receiver<Arc<Event>>,
    prefix: String,
    last: Revision,
    /// Weak, so an open watch does not keep the store (and its broadcast sender) alive.
    shared: Weak<Shared>,
    finished: bool,
}

/// Joins the replayed history (up to `snapshot`) with the live events of `rx`.
pub(crate) fn stream(
    shared: &Arc<Shared>,
    rx: broadcast::Receiver<Arc<Event>>,
    prefix: String,
    replayed: Vec<Event>,
    snapshot: Revision,
) -> WatchStream {
    let live = Live {
        rx,
        prefix,
        last: snapshot,
        shared: Arc::downgrade(shared),
        finished: false,
    };
    let live = futures::stream::unfold(live, |mut st| async move {
        if st.finished {
            return None;
        }
        loop {
            match st.rx.recv().await {
                Ok(ev) => {
                    let rev = ev.revision();
                    if rev <= st.last || !ev.kv.key.starts_with(&st.prefix) {
                        continue;
                    }
                    st.last = rev;
                    let item: Result<Event> = Ok(Event::clone(&ev));
                    return Some((item, st));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, prefix = %st.prefix, "watcher fell behind; closing");
                    st.finished = true;
                    let err = StorageError::Compacted {
                        requested: st.last,
                        compacted: st
                            .shared
                            .upgrade()
                            .map_or(0, |s| s.compacted.load(Ordering::Acquire)),
                    };
                    return Some((Err(err), st));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    futures::stream::iter(replayed.into_iter().map(Ok))
        .chain(live)
        .boxed()
}
