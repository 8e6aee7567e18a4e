//! etcd watch streams as [`WatchStream`]s.
//!
//! One etcd watch per stream, on the prefix's key range from `after + 1`, with `prev_kv` (an
//! update carries its previous value; a delete, for which etcd sends only the key and the
//! delete's revision, is rebuilt from the previous value) and `progress_notify`. etcd sends
//! the events of one revision in one response and revisions in order; events at or below
//! the last delivered revision are skipped so a re-sent response never duplicates.
//!
//! Progress: a response without events (etcd's `IsProgressNotify`: periodic, or the answer to
//! a `WatchProgressRequest` this stream sends when [`Storage::request_watch_progress`] asks)
//! becomes an [`EventKind::Progress`] event at its header revision — etcd sends it only once
//! every event up to that revision has been sent. The watch cache needs it when other tenants
//! of the etcd (another `--etcd-prefix`) advance the revision. Only from etcd ≥ 3.4.31 / 3.5.13:
//! older ones may answer before sending the events the revision covers (upstream checks the
//! same versions).
//!
//! [`Storage::request_watch_progress`]: crate::Storage::request_watch_progress
//!
//! The stream ends after one `Err`: `Compacted` when etcd cancels the watch because its start
//! revision was compacted (the consumer re-lists, as a client does on 410), `Unavailable` or
//! `Backend` when the connection breaks or the member loses its leader (`require_leader`);
//! the watch cache's reflector then re-opens the watch from its revision with back-off.

use std::collections::VecDeque;

use bytes::Bytes;
use etcd_client::{EventType, WatchOptions, WatchResponse};
use futures::StreamExt;

use super::{EtcdStore, map_error, prefix_end};
use crate::{Event, EventKind, KeyValue, Result, Revision, StorageError, WatchStream};

struct State {
    requests: etcd_client::WatchRequestSender,
    stream: etcd_client::WatchResponseStream,
    /// Progress requests of the store (a counter; each change asks etcd once).
    progress: Option<tokio::sync::watch::Receiver<u64>>,
    /// Whether this etcd orders progress answers after the events they cover.
    progress_safe: bool,
    /// The etcd key prefix stripped from event keys.
    key_prefix: String,
    pending: VecDeque<Result<Event>>,
    last: Revision,
    finished: bool,
}

fn convert(key_prefix: &str, kv: &etcd_client::KeyValue) -> Option<KeyValue> {
    Some(KeyValue {
        key: EtcdStore::storage_key(key_prefix, kv.key())?.into(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

impl State {
    /// Turns one etcd response into queued items; returns false when the watch is over.
    fn absorb(&mut self, resp: WatchResponse) -> bool {
        if resp.canceled() {
            let err = if resp.compact_revision() > 0 {
                StorageError::Compacted {
                    requested: self.last,
                    compacted: resp.compact_revision(),
                }
            } else {
                StorageError::Unavailable(format!(
                    "etcd cancelled the watch: {}",
                    resp.cancel_reason()
                ))
            };
            self.pending.push_back(Err(err));
            return false;
        }
        if resp.events().is_empty() && !resp.created() && resp.compact_revision() == 0 {
            // A progress notification: nothing more under the prefix up to this revision
            // (trusted only from an etcd that orders them; see `progress_requests_are_safe`).
            let revision = resp.header().map_or(0, |h| h.revision());
            if self.progress_safe && revision > self.last {
                self.pending.push_back(Ok(Event::progress(revision)));
                self.last = revision;
            }
            return true;
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let revision = kv.mod_revision();
            if revision <= self.last {
                continue;
            }
            let prev = ev
                .prev_kv()
                .and_then(|p| convert(&self.key_prefix, p))
                .map(Box::new);
            let event = match ev.event_type() {
                EventType::Put => {
                    let Some(kv) = convert(&self.key_prefix, kv) else {
                        continue;
                    };
                    Event {
                        kind: EventKind::Put,
                        kv,
                        prev,
                    }
                }
                EventType::Delete => {
                    let Some(key) = EtcdStore::storage_key(&self.key_prefix, kv.key()) else {
                        continue;
                    };
                    let (value, create_revision) = prev
                        .as_ref()
                        .map_or((Bytes::new(), 0), |p| (p.value.clone(), p.create_revision));
                    Event {
                        kind: EventKind::Delete,
                        kv: KeyValue {
                            key: key.into(),
                            value,
                            create_revision,
                            mod_revision: revision,
                        },
                        prev,
                    }
                }
            };
            // Several events of one transaction share a revision: advance after the response.
            self.pending.push_back(Ok(event));
        }
        if let Some(Ok(last)) = self.pending.back() {
            self.last = self.last.max(last.revision());
        }
        true
    }
}

/// Opens a watch on `prefix` for events after `after` (see the module docs).
pub(super) async fn open(store: &EtcdStore, prefix: &str, after: Revision) -> Result<WatchStream> {
    let key = store.etcd_key(prefix);
    let opts = WatchOptions::new()
        .with_range(prefix_end(&key))
        .with_start_revision(after + 1)
        .with_prev_key()
        .with_progress_notify();
    let mut client = store
        .client
        .watch_client()
        .max_decoding_message_size(super::MAX_MESSAGE_BYTES);
    let (requests, mut stream) = store
        .timed("watch", client.watch(key, Some(opts)))
        .await
        .map_err(super::RequestError::into_storage)?
        .split();
    let mut progress = store.progress_requests.subscribe();
    // Only requests made from now on concern this stream.
    progress.mark_unchanged();
    let mut state = State {
        requests,
        progress: store.progress_safe.then_some(progress),
        progress_safe: store.progress_safe,
        stream: {
            // The first response confirms the watch (or refuses it).
            let first = store
                .timed("watch", stream.message())
                .await
                .map_err(super::RequestError::into_storage)?;
            match first {
                Some(resp) if resp.canceled() => {
                    if resp.compact_revision() > 0 {
                        store.note_compacted(resp.compact_revision());
                        return Err(StorageError::Compacted {
                            requested: after,
                            compacted: resp.compact_revision(),
                        });
                    }
                    return Err(StorageError::Backend(format!(
                        "etcd refused the watch: {}",
                        resp.cancel_reason()
                    )));
                }
                Some(_) => stream,
                None => return Err(StorageError::Unavailable("etcd closed the watch".into())),
            }
        },
        key_prefix: store.prefix.clone(),
        pending: VecDeque::new(),
        last: after,
        finished: false,
    };
    state.pending.clear();
    let events = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.finished {
                return None;
            }
            let message = match st.progress.as_mut() {
                Some(progress) => tokio::select! {
                    m = st.stream.message() => m,
                    changed = progress.changed() => {
                        if changed.is_ok() {
                            // The answer arrives on the response stream; a failed send shows
                            // up there too.
                            let _ = st.requests.request_progress().await;
                        } else {
                            st.progress = None;
                        }
                        continue;
                    }
                },
                None => st.stream.message().await,
            };
            match message {
                Ok(Some(resp)) => {
                    if !st.absorb(resp) {
                        st.finished = true;
                    }
                }
                Ok(None) => {
                    st.finished = true;
                    st.pending.push_back(Err(StorageError::Unavailable(
                        "etcd watch stream ended".into(),
                    )));
                }
                Err(e) => {
                    st.finished = true;
                    st.pending.push_back(Err(map_error(e)));
                }
            }
        }
    });
    Ok(events.boxed())
}
