//! Reads against one redb snapshot: `get`, `list` (current or past revision) and the history
//! replay that starts a watch. Every function takes a read transaction, so the revision it
//! reports and the data it returns come from the same snapshot.

use std::ops::Bound;

use redb::ReadTransaction;

use super::backend;
use super::codec::{
    EVENTS, HISTORY, INITIAL_REVISION, LATEST, META, META_COMPACTED, META_REV, Version,
    decode_latest, event_for,
};
use crate::{Event, KeyValue, ListRequest, ListResponse, Result, Revision, StorageError};

/// (current revision, compacted revision) of the snapshot.
pub(crate) fn revisions(txn: &ReadTransaction) -> Result<(Revision, Revision)> {
    let meta = txn.open_table(META).map_err(backend)?;
    let rev = meta
        .get(META_REV)
        .map_err(backend)?
        .map(|g| g.value())
        .unwrap_or(INITIAL_REVISION);
    let compacted = meta
        .get(META_COMPACTED)
        .map_err(backend)?
        .map(|g| g.value())
        .unwrap_or(0);
    Ok((rev, compacted))
}

fn version(
    history: &redb::ReadOnlyTable<(&'static str, i64), &'static [u8]>,
    key: &str,
    rev: Revision,
) -> Result<Option<Version>> {
    match history.get((key, rev)).map_err(backend)? {
        Some(raw) => Version::decode(raw.value())
            .map(Some)
            .ok_or_else(|| StorageError::Backend(format!("corrupt record for key {key}"))),
        None => Ok(None),
    }
}

/// How many `history` rows a [`HistoryScan`] steps over to reach the next wanted one before it
/// seeks instead (a key with many retained versions): a seek costs about one lookup.
const MAX_SKIP: usize = 16;

/// The `history` rows of keys visited in ascending order (a current-revision list), read by
/// one forward scan of the table instead of one tree descent per key: a list of 100,000 keys
/// then reads each history leaf page once (the descents re-read evicted leaves through the
/// small page cache and took ~60% of a start with 100,000 objects). Falls back to a seek after
/// [`MAX_SKIP`] rows, so a key with a long retained history costs no more than a lookup.
struct HistoryScan<'t> {
    table: &'t HistoryTable,
    rows: HistoryRows,
}

type HistoryTable = redb::ReadOnlyTable<(&'static str, i64), &'static [u8]>;
type HistoryRows = std::iter::Peekable<redb::Range<'static, (&'static str, i64), &'static [u8]>>;

/// Where a [`HistoryScan`] stands relative to the row it looks for.
enum Step {
    Found(Version),
    /// The next row is past the wanted one: there is no such row.
    Missing,
    /// The next row is before the wanted one (stepped over).
    Behind,
}

impl<'t> HistoryScan<'t> {
    /// A scan from the first row at or after key `from`.
    fn new(table: &'t HistoryTable, from: &str) -> Result<Self> {
        let rows = Self::rows_from(table, (from, i64::MIN))?;
        Ok(HistoryScan { table, rows })
    }

    fn rows_from(table: &HistoryTable, from: (&str, i64)) -> Result<HistoryRows> {
        Ok(table
            .range::<(&str, i64)>(from..)
            .map_err(backend)?
            .peekable())
    }

    /// The version of `key` written at `rev`; keys must be asked for in ascending order.
    fn find(&mut self, key: &str, rev: Revision) -> Result<Option<Version>> {
        for _ in 0..MAX_SKIP {
            match self.step(key, rev)? {
                Step::Found(v) => return Ok(Some(v)),
                Step::Missing => return Ok(None),
                Step::Behind => {}
            }
        }
        // Many retained versions in between: seek, as a lookup would.
        self.rows = Self::rows_from(self.table, (key, rev))?;
        match self.step(key, rev)? {
            Step::Found(v) => Ok(Some(v)),
            Step::Missing | Step::Behind => Ok(None),
        }
    }

    /// Compares the next row with `(key, rev)`, consuming it unless it is past it.
    fn step(&mut self, key: &str, rev: Revision) -> Result<Step> {
        let ordering = match self.rows.peek() {
            None => return Ok(Step::Missing),
            Some(Ok((k, _))) => k.value().cmp(&(key, rev)),
            Some(Err(_)) => std::cmp::Ordering::Less,
        };
        if ordering == std::cmp::Ordering::Greater {
            // Left for the next key.
            return Ok(Step::Missing);
        }
        match self.rows.next() {
            Some(Ok((_, raw))) if ordering == std::cmp::Ordering::Equal => {
                Version::decode(raw.value())
                    .map(Step::Found)
                    .ok_or_else(|| StorageError::Backend(format!("corrupt record for key {key}")))
            }
            Some(Ok(_)) => Ok(Step::Behind),
            Some(Err(e)) => Err(backend(e)),
            None => Ok(Step::Missing),
        }
    }
}

/// The latest value of `key`.
pub(crate) fn get(txn: &ReadTransaction, key: &str) -> Result<Option<KeyValue>> {
    let latest = txn.open_table(LATEST).map_err(backend)?;
    let Some(raw) = latest.get(key).map_err(backend)? else {
        return Ok(None);
    };
    let Some((_, mod_rev)) = decode_latest(raw.value()) else {
        return Err(StorageError::Backend(format!(
            "corrupt index for key {key}"
        )));
    };
    let history = txn.open_table(HISTORY).map_err(backend)?;
    Ok(version(&history, key, mod_rev)?.map(|v| v.key_value(key.into(), mod_rev)))
}

/// Where a scan of `req` starts, as the first key to consider.
fn start_key(req: &ListRequest) -> (String, bool) {
    match &req.start_after {
        Some(after) if after.as_str() >= req.prefix.as_str() => (after.clone(), true),
        _ => (req.prefix.clone(), false),
    }
}

/// A range read; see [`crate::Storage::list`].
pub(crate) fn list(txn: &ReadTransaction, req: &ListRequest) -> Result<ListResponse> {
    let (current, compacted) = revisions(txn)?;
    let at = if req.revision == 0 {
        current
    } else {
        req.revision
    };
    if at > current {
        return Err(StorageError::FutureRevision {
            requested: at,
            current,
        });
    }
    if req.revision != 0 && at <= compacted {
        return Err(StorageError::Compacted {
            requested: at,
            compacted,
        });
    }
    let mut out = ListResponse {
        revision: at,
        ..ListResponse::default()
    };
    let limit = if req.limit == 0 {
        usize::MAX
    } else {
        req.limit
    };
    let push = |out: &mut ListResponse, kv: KeyValue| {
        if out.items.len() < limit {
            out.items.push(kv);
        } else {
            out.more = true;
            out.remaining += 1;
        }
    };
    let history = txn.open_table(HISTORY).map_err(backend)?;
    let (start, exclusive) = start_key(req);
    if at == current {
        let latest = txn.open_table(LATEST).map_err(backend)?;
        let mut versions = HistoryScan::new(&history, &start)?;
        let lower = if exclusive {
            Bound::Excluded(start.as_str())
        } else {
            Bound::Included(start.as_str())
        };
        for item in latest
            .range::<&str>((lower, Bound::Unbounded))
            .map_err(backend)?
        {
            let (k, raw) = item.map_err(backend)?;
            let key = k.value();
            if !key.starts_with(&req.prefix) {
                break;
            }
            if out.items.len() >= limit {
                out.more = true;
                if req.skip_count {
                    break;
                }
                out.remaining += 1;
                continue;
            }
            let Some((_, mod_rev)) = decode_latest(raw.value()) else {
                return Err(StorageError::Backend(format!(
                    "corrupt index for key {key}"
                )));
            };
            if let Some(v) = versions.find(key, mod_rev)? {
                push(&mut out, v.key_value(key.into(), mod_rev));
            }
        }
        return Ok(out);
    }
    // A past revision: per key, the newest retained version at or below `at`.
    let lower = if exclusive {
        Bound::Excluded((start.as_str(), i64::MAX))
    } else {
        Bound::Included((start.as_str(), i64::MIN))
    };
    let mut pending: Option<(String, Revision, Version)> = None;
    for item in history
        .range::<(&str, i64)>((lower, Bound::Unbounded))
        .map_err(backend)?
    {
        if out.more && req.skip_count {
            break;
        }
        let (k, raw) = item.map_err(backend)?;
        let (key, rev) = k.value();
        if !key.starts_with(&req.prefix) {
            break;
        }
        // A new key: emit the previous key's state (taken even when it is a tombstone).
        if pending.as_ref().is_some_and(|(pk, _, _)| pk != key)
            && let Some((pk, prev_rev, v)) = pending.take()
            && !v.tombstone
        {
            push(&mut out, v.key_value(pk.as_str().into(), prev_rev));
        }
        if rev <= at {
            let v = Version::decode(raw.value())
                .ok_or_else(|| StorageError::Backend(format!("corrupt record for key {key}")))?;
            pending = Some((key.to_owned(), rev, v));
        }
    }
    if let Some((pk, rev, v)) = pending
        && !v.tombstone
    {
        push(&mut out, v.key_value(pk.as_str().into(), rev));
    }
    Ok(out)
}

/// Retained events for keys under `prefix` with revision > `after`, and the snapshot's revision.
pub(crate) fn replay(
    txn: &ReadTransaction,
    prefix: &str,
    after: Revision,
) -> Result<(Vec<Event>, Revision)> {
    let (current, compacted) = revisions(txn)?;
    if after < compacted {
        return Err(StorageError::Compacted {
            requested: after,
            compacted,
        });
    }
    let log = txn.open_table(EVENTS).map_err(backend)?;
    let history = txn.open_table(HISTORY).map_err(backend)?;
    let mut events = Vec::new();
    let from = after.saturating_add(1);
    for item in log.range(from..).map_err(backend)? {
        let (rev, key) = item.map_err(backend)?;
        let (rev, key) = (rev.value(), key.value());
        if !key.starts_with(prefix) {
            continue;
        }
        let Some(v) = version(&history, key, rev)? else {
            return Err(StorageError::Backend(format!(
                "missing version {rev} of {key}"
            )));
        };
        let prev = if v.prev_mod_revision > 0 {
            version(&history, key, v.prev_mod_revision)?
        } else {
            None
        };
        events.push(event_for(key, rev, &v, prev.as_ref()));
    }
    Ok((events, current))
}
