//! Filling the cache while it already serves (issue 12: "what is needed to serve a request is
//! loaded, the rest follows").
//!
//! The cache starts empty at the backend's current revision R and follows the backend's watch
//! from R at once, applying every event (to the state and the rings) whether its key is filled
//! yet or not. A fill task then lists key ranges in pages — the prefixes the cache was told to
//! fill first ([`super::WatchCacheOptions::fill_first`]), then everything under the cache
//! prefix in key order — and merges each page under the state lock. A page is merged only once
//! the cache has seen the page's revision, and a listed value only for a key the state has not
//! heard of since R: a key with an event after R holds that event's value (as new as the
//! page's, or newer), a key deleted after R is remembered ([`Coverage::deleted`]) until the
//! fill ends. So after a page merges, every key of its range holds its value at the cache's
//! revision, whatever revisions the pages were read at.
//!
//! A range is served from the cache only once all of it has merged ([`Coverage::covers_key`],
//! [`Coverage::covers_prefix`]); before, reads go to the backend: the cache's own `get`, `list`
//! and `watch_with_initial` read it themselves, its `*_fresh` reads answer None so that the
//! caller does. Watches need no filled state: they start from the rings (complete after R) or
//! from now. A re-list (the backend watch compacted) starts a new fill generation; a fill of an
//! older one stops at its next page.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;

use super::Shared;
use crate::{ListRequest, ListResponse, Revision, StorageError};

/// Which keys of the cache prefix the state holds completely.
#[derive(Debug)]
pub(super) struct Coverage {
    /// Bumped by every (re)start of a fill: a page of an older generation is not merged.
    generation: u64,
    /// Whole prefixes filled ahead of the scan.
    prefixes: Vec<String>,
    /// Every key at or below this one is filled by the scan (None: none yet).
    cursor: Option<Arc<str>>,
    /// Everything is filled.
    done: bool,
    /// Keys deleted since the fill began: a page read before the delete must not bring them
    /// back.
    tombstones: HashSet<Arc<str>>,
}

/// How far a merged page takes the fill.
#[derive(Debug)]
pub(super) enum Progress {
    /// A page in the middle of a prefix filled ahead of the scan.
    Partial,
    /// The last page of that prefix: all of it is filled.
    Prefix(String),
    /// A page of the scan, up to and including this key.
    Cursor(Arc<str>),
    /// The scan's last page: everything is filled.
    Done,
}

impl Coverage {
    /// Everything filled (a state replaced by a complete list).
    pub(super) fn complete(generation: u64) -> Coverage {
        Coverage {
            generation,
            prefixes: Vec::new(),
            cursor: None,
            done: true,
            tombstones: HashSet::new(),
        }
    }

    /// Nothing filled yet, for fill `generation`.
    pub(super) fn pending(generation: u64) -> Coverage {
        Coverage {
            done: false,
            ..Coverage::complete(generation)
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the state holds the current value (or absence) of `key`.
    pub(super) fn covers_key(&self, key: &str) -> bool {
        self.done
            || self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
            || self.cursor.as_deref().is_some_and(|c| key <= c)
    }

    /// Whether the state holds every key under `prefix`.
    pub(super) fn covers_prefix(&self, prefix: &str) -> bool {
        // The scan covers a prefix once its cursor is past every key that starts with it: a
        // cursor above `prefix` that does not start with it differs from it at a greater
        // character before its end, so it is above every such key.
        self.done
            || self.prefixes.iter().any(|p| prefix.starts_with(p.as_str()))
            || self
                .cursor
                .as_deref()
                .is_some_and(|c| c > prefix && !c.starts_with(prefix))
    }

    /// A delete event for `key` was applied.
    pub(super) fn deleted(&mut self, key: &Arc<str>) {
        if !self.done {
            self.tombstones.insert(Arc::clone(key));
        }
    }

    /// Whether a listed value of `key` may be merged: its range is not filled yet and no event
    /// since the fill began touched it (`in_state`: the state holds the key).
    pub(super) fn may_merge(&self, key: &str, in_state: bool) -> bool {
        !in_state && !self.covers_key(key) && !self.tombstones.contains(key)
    }

    /// Records a merged page's progress.
    pub(super) fn advance(&mut self, progress: Progress) {
        match progress {
            Progress::Partial => {}
            Progress::Prefix(p) => self.prefixes.push(p),
            Progress::Cursor(key) => self.cursor = Some(key),
            Progress::Done => {
                self.done = true;
                self.prefixes = Vec::new();
                self.cursor = None;
                self.tombstones = HashSet::new();
            }
        }
    }
}

/// What a fill reads: one prefix that becomes servable as a whole, or the scan of the cache
/// prefix that ends the fill.
#[derive(Clone, Copy, Debug)]
pub(super) enum Range<'a> {
    Prefix(&'a str),
    Scan,
}

/// Why a fill ended before its range was filled.
#[derive(Debug)]
pub(super) enum Ended {
    /// Shut down, or a re-list started a newer fill.
    Superseded,
    /// The backend failed (only when the caller asked for failures, at start).
    Failed(StorageError),
}

/// Fills `range` for fill `generation`, page by page. Backend failures are retried with the
/// cache's back-off, unless `fail_fast` (the start, which reports them).
pub(super) async fn fill_range(
    shared: &Shared,
    generation: u64,
    range: Range<'_>,
    fail_fast: bool,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Ended> {
    let prefix = match range {
        Range::Prefix(p) => p,
        Range::Scan => shared.prefix.as_str(),
    };
    let mut start_after: Option<String> = None;
    let mut attempt = 0u32;
    loop {
        if *shutdown.borrow() {
            return Err(Ended::Superseded);
        }
        if let Some(delay) = shared.opts.fill_page_delay.filter(|_| !fail_fast) {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Err(Ended::Superseded),
                () = tokio::time::sleep(delay) => {}
            }
        }
        let page = match read_page(shared, prefix, start_after.as_deref()).await {
            Ok(page) => page,
            Err(error) if fail_fast => return Err(Ended::Failed(error)),
            Err(error) => {
                attempt += 1;
                tracing::warn!(%error, prefix, attempt, "watch cache: fill read failed");
                let delay = backoff(shared, attempt);
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => return Err(Ended::Superseded),
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        attempt = 0;
        let last = page.items.last().map(|kv| Arc::clone(&kv.key));
        let finished = !page.more || last.is_none();
        let progress = match (range, finished, &last) {
            (Range::Prefix(p), true, _) => Progress::Prefix(p.to_owned()),
            (Range::Scan, true, _) => Progress::Done,
            (Range::Scan, false, Some(last)) => Progress::Cursor(Arc::clone(last)),
            _ => Progress::Partial,
        };
        if !shared.merge_fill(generation, page.items, progress) {
            return Err(Ended::Superseded);
        }
        if finished {
            return Ok(());
        }
        start_after = last.map(|k| k.to_string());
        // Let the reflector and the requests in between pages.
        tokio::task::yield_now().await;
    }
}

/// One page of a fill, at a revision the cache has seen: the backend's current one (its
/// cheapest read) once the cache catches up with it, else the cache's own.
async fn read_page(
    shared: &Shared,
    prefix: &str,
    start_after: Option<&str>,
) -> Result<ListResponse, StorageError> {
    let request = |revision: Revision| ListRequest {
        prefix: prefix.to_owned(),
        start_after: start_after.map(str::to_owned),
        limit: shared.opts.list_page_size.max(1),
        revision,
        skip_count: true,
    };
    let page = shared.store.list(request(0)).await?;
    if shared
        .wait_for_revision(page.revision, shared.catch_up_wait)
        .await
        .is_ok()
    {
        return Ok(page);
    }
    // The backend's revision outran the cache's watch (another tenant of the store wrote):
    // read at the cache's revision instead.
    let at = shared.published_revision();
    let page = shared.store.list(request(at)).await?;
    if page.revision > shared.published_revision() {
        return Err(StorageError::Backend(format!(
            "watch cache: fill page at revision {} ahead of the cache",
            page.revision
        )));
    }
    Ok(page)
}

fn backoff(shared: &Shared, attempt: u32) -> std::time::Duration {
    let opts = &shared.opts;
    opts.backoff_initial
        .saturating_mul(1u32 << attempt.min(16))
        .min(opts.backoff_max)
}

/// The background fill of generation `generation`, once the fill gate is open: the `first`
/// prefixes, then the scan. Ends when everything is filled, on shutdown or when superseded.
pub(super) async fn run(
    shared: Arc<Shared>,
    generation: u64,
    first: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut gate = shared.fill_gate.subscribe();
    tokio::select! {
        biased;
        _ = shutdown.changed() => return,
        open = gate.wait_for(|open| *open) => if open.is_err() { return },
    }
    let started = std::time::Instant::now();
    for prefix in &first {
        let filled = fill_range(
            &shared,
            generation,
            Range::Prefix(prefix),
            false,
            &mut shutdown,
        );
        if filled.await.is_err() {
            return;
        }
    }
    if fill_range(&shared, generation, Range::Scan, false, &mut shutdown)
        .await
        .is_ok()
    {
        tracing::info!(
            prefix = %shared.prefix,
            took_ms = started.elapsed().as_millis() as u64,
            "watch cache filled"
        );
    }
}
