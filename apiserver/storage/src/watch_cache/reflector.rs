//! The background loop that keeps the cache in sync with the backend (upstream's reflector).
//!
//! An explicit state machine (DESIGN invariant 8): every state says how it recovers.
//!
//! ```text
//! Listing ──ok──▶ Watching ──event──▶ Watching
//!    ▲  │             │ Err(Compacted) ─────────────▶ Listing (state emptied and refilled
//!    │  │             │                                  in the background, watchers ended)
//!    │  └─err─▶ Backoff{then: Listing}
//!    │                │ other error / stream ended ──▶ Backoff{then: Resuming}
//!    │                                                   │
//!    └──── Compacted ◀── Resuming (re-watch from the cache revision; state and ring kept)
//! any state ── shutdown ──▶ Stopped
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::ReadyChunks;
use tokio::sync::watch;

use super::{Shared, fill};
use crate::{KeyValue, ListRequest, Result, Revision, Storage, StorageError, WatchStream};

/// How many events the loop applies under one lock acquisition at most.
const BATCH: usize = 256;

/// Where to go after a back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Listing,
    Resuming,
}

/// The loop's states.
pub(super) enum State {
    /// Watch from the backend's current revision with an emptied state, and start filling it.
    Listing { attempt: u32 },
    /// Re-open the backend watch after the cache's revision, keeping state, ring and watchers.
    Resuming { attempt: u32 },
    /// Apply events from the backend watch.
    Watching { stream: ReadyChunks<WatchStream> },
    /// Wait before retrying.
    Backoff { attempt: u32, then: Next },
    /// Done: the cache was dropped or shut down.
    Stopped,
}

impl State {
    /// Following `stream`, applying up to [`BATCH`] ready events per step.
    pub(super) fn watching(stream: WatchStream) -> State {
        State::Watching {
            stream: stream.ready_chunks(BATCH),
        }
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Listing { attempt } => write!(f, "Listing({attempt})"),
            State::Resuming { attempt } => write!(f, "Resuming({attempt})"),
            State::Watching { .. } => write!(f, "Watching"),
            State::Backoff { attempt, then } => write!(f, "Backoff({attempt}, {then:?})"),
            State::Stopped => write!(f, "Stopped"),
        }
    }
}

/// Lists every key under `prefix` in pages, all at one revision: `at`, or (0) the current one.
pub(super) async fn list_all(
    store: &dyn Storage,
    prefix: &str,
    page_size: usize,
    at: Revision,
) -> Result<(Vec<KeyValue>, Revision)> {
    let mut items = Vec::new();
    let mut revision = at;
    let mut start_after = None;
    loop {
        let page = store
            .list(ListRequest {
                prefix: prefix.to_owned(),
                start_after: start_after.take(),
                limit: page_size,
                revision,
                // Only `more` matters here: counting the rest per page would make the fill
                // quadratic in the number of keys.
                skip_count: true,
            })
            .await?;
        revision = page.revision;
        start_after = page.items.last().map(|kv| kv.key.to_string());
        items.extend(page.items);
        if !page.more || start_after.is_none() {
            return Ok((items, revision));
        }
    }
}

/// The loop: the store, the shared cache and the shutdown signal.
pub(super) struct Reflector {
    pub(super) store: Arc<dyn Storage>,
    pub(super) shared: Arc<Shared>,
    pub(super) shutdown: watch::Receiver<bool>,
    /// When the cache's rings next have events to drop by age (None: nothing to wake for, so
    /// an idle cache never wakes up).
    pub(super) next_trim: Option<std::time::Instant>,
}

impl Reflector {
    /// Runs until shutdown.
    pub(super) async fn run(mut self, mut state: State) {
        loop {
            tracing::trace!(?state, "watch cache step");
            state = self.step(state).await;
            if matches!(state, State::Stopped) {
                self.shared.stop();
                tracing::debug!(prefix = %self.shared.prefix, "watch cache stopped");
                return;
            }
        }
    }

    fn backoff_delay(&self, attempt: u32) -> Duration {
        let opts = &self.shared.opts;
        let factor = 1u32 << attempt.min(16);
        opts.backoff_initial
            .saturating_mul(factor)
            .min(opts.backoff_max)
    }

    async fn open_watch(&self, after: Revision) -> Result<State> {
        let stream = self.store.watch(&self.shared.prefix, after).await?;
        Ok(State::watching(stream))
    }

    /// One transition.
    pub(super) async fn step(&mut self, state: State) -> State {
        if *self.shutdown.borrow() {
            return State::Stopped;
        }
        match state {
            State::Stopped => State::Stopped,
            State::Listing { attempt } => {
                // Follow the backend from its current revision at once, with an empty state
                // that a fill task fills while the cache serves (`fill.rs`).
                let opened = async {
                    let revision = self.store.current_revision().await?;
                    Ok::<_, StorageError>((revision, self.open_watch(revision).await?))
                };
                match opened.await {
                    Ok((revision, next)) => {
                        let shared = &self.shared;
                        let generation = shared.reset(revision);
                        tokio::spawn(fill::run(
                            Arc::clone(shared),
                            generation,
                            shared.opts.fill_first.clone(),
                            self.shutdown.clone(),
                        ));
                        next
                    }
                    Err(error) => {
                        tracing::warn!(%error, "watch cache: re-list failed");
                        State::Backoff {
                            attempt: attempt + 1,
                            then: Next::Listing,
                        }
                    }
                }
            }
            State::Resuming { attempt } => {
                match self.open_watch(self.shared.published_revision()).await {
                    Ok(next) => next,
                    Err(StorageError::Compacted { .. }) => {
                        self.shared.set_unready();
                        State::Listing { attempt }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "watch cache: re-watch failed");
                        State::Backoff {
                            attempt: attempt + 1,
                            then: Next::Resuming,
                        }
                    }
                }
            }
            State::Backoff { attempt, then } => {
                let delay = self.backoff_delay(attempt);
                tokio::select! {
                    biased;
                    _ = self.shutdown.changed() => State::Stopped,
                    () = tokio::time::sleep(delay) => match then {
                        Next::Listing => State::Listing { attempt },
                        Next::Resuming => State::Resuming { attempt },
                    },
                }
            }
            State::Watching { mut stream } => {
                let trim_at = self.next_trim.map(tokio::time::Instant::from_std);
                let batch = tokio::select! {
                    biased;
                    _ = self.shutdown.changed() => return State::Stopped,
                    batch = stream.next() => batch,
                    () = sleep_until_some(trim_at) => {
                        self.next_trim = self.shared.trim();
                        return State::Watching { stream };
                    }
                };
                let Some(batch) = batch else {
                    tracing::debug!("watch cache: backend watch ended; resuming");
                    return State::Backoff {
                        attempt: 0,
                        then: Next::Resuming,
                    };
                };
                let mut events = Vec::with_capacity(batch.len());
                let mut failure = None;
                for item in batch {
                    match item {
                        Ok(event) => events.push(event),
                        Err(error) => {
                            failure = Some(error);
                            break;
                        }
                    }
                }
                self.next_trim = self.shared.apply(events);
                match failure {
                    None => State::Watching { stream },
                    Some(StorageError::Compacted { .. }) => {
                        tracing::info!("watch cache: backend watch compacted; re-listing");
                        self.shared.set_unready();
                        State::Listing { attempt: 0 }
                    }
                    Some(error) => {
                        tracing::warn!(%error, "watch cache: backend watch failed; resuming");
                        State::Backoff {
                            attempt: 1,
                            then: Next::Resuming,
                        }
                    }
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever when None.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
