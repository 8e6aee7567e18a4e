//! `ferrokube migrate --from DIR --to-etcd ...`: copies an embedded store into etcd.
//!
//! resourceVersions must never go backwards for a client that saw the old server: every
//! resourceVersion it holds is at most the source store's revision `R`. So, before copying,
//! etcd's revision is bumped past `R` (etcd has no "set revision": each put to a scratch key
//! under the prefix bumps it by one; the puts run concurrently, then the scratch key is
//! deleted), and the objects are then created with compare-and-swap creates, each getting a
//! revision above `R`. Objects keep their content (uid, creationTimestamp, ...); their
//! resourceVersions change, all to values above every old one, so a client's next list or
//! watch simply sees newer versions (a watch resuming from an old resourceVersion gets 410
//! after the server's first compaction, as after any compaction).
//!
//! The target prefix must be empty: migrating twice, or into a live cluster, is refused.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::EtcdStore;
use crate::{KeyValue, ListRequest, Result, Revision, Storage, StorageError};

/// How many etcd requests are in flight at once during a migration.
const CONCURRENCY: usize = 64;
/// Keys read from the source per page.
const PAGE: usize = 1000;
/// The scratch key whose puts bump etcd's revision (under the prefix, deleted afterwards).
const BUMP_KEY: &str = "\u{0}ferrokube-migrate-bump";

/// What a migration did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateReport {
    /// The source store's revision (every old resourceVersion is at or below it).
    pub source_revision: Revision,
    /// Keys copied.
    pub keys: u64,
    /// etcd's revision before the copy started.
    pub etcd_revision_before: Revision,
    /// Revision bumps issued to move etcd past the source revision.
    pub bumps: u64,
    /// etcd's revision when the copy finished.
    pub etcd_revision_after: Revision,
    /// The lowest revision an object got in etcd (above `source_revision`).
    pub lowest_new_revision: Revision,
}

/// Every key of `source` under `prefix`, read at one revision.
async fn read_all(source: &dyn Storage, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
    let mut items = Vec::new();
    let mut revision = 0;
    let mut start_after = None;
    loop {
        let page = source
            .list(ListRequest {
                prefix: prefix.to_owned(),
                start_after: start_after.take(),
                limit: PAGE,
                revision,
                skip_count: false,
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

/// Copies every key under `prefix` (the server's `/registry/`) of `source` into `target`.
pub async fn migrate(
    source: &dyn Storage,
    target: &Arc<EtcdStore>,
    prefix: &str,
) -> Result<MigrateReport> {
    let existing = target
        .list(ListRequest {
            prefix: prefix.to_owned(),
            limit: 1,
            ..ListRequest::default()
        })
        .await?;
    if let Some(kv) = existing.items.first() {
        return Err(StorageError::AlreadyExists {
            key: format!(
                "{} (the target prefix is not empty; refusing to merge into it)",
                kv.key
            ),
        });
    }
    let (items, source_revision) = read_all(source, prefix).await?;
    let etcd_revision_before = target.current_revision().await?;
    // Bump etcd's revision to at least the source's: each put below bumps it by one.
    let needed = (source_revision - etcd_revision_before).max(0);
    let bumps = u64::try_from(needed).unwrap_or(0);
    target.bump_revision(bumps, BUMP_KEY, CONCURRENCY).await?;
    let keys = items.len() as u64;
    let revisions: Vec<Revision> = futures::stream::iter(items)
        .map(|kv| {
            let target = target.clone();
            async move {
                target
                    .create(&kv.key, kv.value)
                    .await
                    .map(|created| created.mod_revision)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let lowest_new_revision = revisions.iter().copied().min().unwrap_or(0);
    if keys > 0 && lowest_new_revision <= source_revision {
        return Err(StorageError::Backend(format!(
            "an object got revision {lowest_new_revision}, not above the source's {source_revision}"
        )));
    }
    Ok(MigrateReport {
        source_revision,
        keys,
        etcd_revision_before,
        bumps,
        etcd_revision_after: target.current_revision().await?,
        lowest_new_revision,
    })
}
