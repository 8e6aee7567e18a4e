//! On-disk layout of the embedded store: table definitions and value encodings.
//!
//! Four redb tables:
//!
//! * `meta`: `&str → i64` — `rev` (current revision) and `compacted` (compacted revision).
//!   Reading both on open is O(1): startup never scans keys.
//! * `latest`: `key → [create_rev i64][mod_rev i64]` — live keys only, the index for `get`,
//!   current-revision lists and compare-and-swap checks. Values are not duplicated here.
//! * `history`: `(key, mod_rev) → [kind u8][create_rev i64][prev_mod_rev i64][value]` — every
//!   retained version, tombstones included (kind 1, empty value). `prev_mod_rev` (0 for a
//!   create) links a version to the one it replaced, which builds watch events' `prev` and a
//!   delete's last value.
//! * `events`: `rev → key` — the event log, replayed by `watch` and walked by compaction.
//!
//! Compaction at `C` keeps, per key, the newest version at or below `C` when it is a put (the
//! state every read above `C` needs); it is also the `prev` of the key's first event above `C`.

use std::sync::Arc;

use bytes::Bytes;
use redb::TableDefinition;

use crate::{Event, EventKind, KeyValue, Revision};

/// Store-wide counters.
pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// Live keys → (create revision, mod revision).
pub(crate) const LATEST: TableDefinition<&str, &[u8]> = TableDefinition::new("latest");
/// (key, mod revision) → encoded [`Version`].
pub(crate) const HISTORY: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("history");
/// Revision → key written at that revision.
pub(crate) const EVENTS: TableDefinition<i64, &str> = TableDefinition::new("events");

/// `meta` key of the current revision.
pub(crate) const META_REV: &str = "rev";
/// `meta` key of the compacted revision.
pub(crate) const META_COMPACTED: &str = "compacted";

/// The revision of a fresh, empty store (as in etcd).
pub(crate) const INITIAL_REVISION: Revision = 1;

/// Encodes a `latest` row.
pub(crate) fn encode_latest(create_revision: Revision, mod_revision: Revision) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&create_revision.to_le_bytes());
    out[8..].copy_from_slice(&mod_revision.to_le_bytes());
    out
}

/// Decodes a `latest` row into (create revision, mod revision).
pub(crate) fn decode_latest(raw: &[u8]) -> Option<(Revision, Revision)> {
    Some((read_i64(raw, 0)?, read_i64(raw, 8)?))
}

fn read_i64(raw: &[u8], at: usize) -> Option<i64> {
    let bytes: [u8; 8] = raw.get(at..at + 8)?.try_into().ok()?;
    Some(i64::from_le_bytes(bytes))
}

/// One retained version of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    /// True for a tombstone (the key was deleted at this revision).
    pub tombstone: bool,
    pub create_revision: Revision,
    /// The mod revision of the version this one replaced (0 when none).
    pub prev_mod_revision: Revision,
    pub value: Bytes,
}

const HEADER: usize = 17;

impl Version {
    /// Encodes for the `history` table.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.value.len());
        out.push(u8::from(self.tombstone));
        out.extend_from_slice(&self.create_revision.to_le_bytes());
        out.extend_from_slice(&self.prev_mod_revision.to_le_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    /// Decodes a `history` value; None if it is malformed.
    pub fn decode(raw: &[u8]) -> Option<Self> {
        let kind = *raw.first()?;
        Some(Self {
            tombstone: kind == 1,
            create_revision: read_i64(raw, 1)?,
            prev_mod_revision: read_i64(raw, 9)?,
            value: Bytes::copy_from_slice(raw.get(HEADER..)?),
        })
    }

    /// Whether a raw `history` value is a tombstone, without copying the value.
    pub fn raw_is_tombstone(raw: &[u8]) -> bool {
        raw.first() == Some(&1)
    }

    /// This version as the key's value at `mod_revision` (for puts).
    pub fn key_value(&self, key: Arc<str>, mod_revision: Revision) -> KeyValue {
        KeyValue {
            key,
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision,
        }
    }
}

/// Builds the watch event for the version `version` of `key` written at `revision`, given the
/// version it replaced (`prev`, at `version.prev_mod_revision`).
pub(crate) fn event_for(
    key: &str,
    revision: Revision,
    version: &Version,
    prev: Option<&Version>,
) -> Event {
    let key: Arc<str> = key.into();
    let prev_kv = prev.map(|p| Box::new(p.key_value(Arc::clone(&key), version.prev_mod_revision)));
    if version.tombstone {
        Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key,
                value: prev.map(|p| p.value.clone()).unwrap_or_default(),
                create_revision: version.create_revision,
                mod_revision: revision,
            },
            prev: prev_kv,
        }
    } else {
        Event {
            kind: EventKind::Put,
            kv: version.key_value(key, revision),
            prev: prev_kv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_round_trips() {
        let v = Version {
            tombstone: false,
            create_revision: 5,
            prev_mod_revision: 7,
            value: Bytes::from_static(b"hello"),
        };
        assert_eq!(Version::decode(&v.encode()), Some(v.clone()));
        assert!(!Version::raw_is_tombstone(&v.encode()));
        let t = Version {
            tombstone: true,
            value: Bytes::new(),
            ..v
        };
        assert!(Version::raw_is_tombstone(&t.encode()));
        assert_eq!(Version::decode(&[1, 2]), None);
    }

    #[test]
    fn latest_round_trips() {
        assert_eq!(decode_latest(&encode_latest(3, 9)), Some((3, 9)));
        assert_eq!(decode_latest(&[0; 4]), None);
    }

    #[test]
    fn delete_event_carries_last_value() {
        let prev = Version {
            tombstone: false,
            create_revision: 2,
            prev_mod_revision: 0,
            value: Bytes::from_static(b"v1"),
        };
        let tomb = Version {
            tombstone: true,
            create_revision: 2,
            prev_mod_revision: 4,
            value: Bytes::new(),
        };
        let ev = event_for("/a", 6, &tomb, Some(&prev));
        assert_eq!(ev.kind, EventKind::Delete);
        assert_eq!(ev.kv.value, Bytes::from_static(b"v1"));
        assert_eq!(ev.kv.mod_revision, 6);
        assert_eq!(ev.prev.map(|p| p.mod_revision), Some(4));
    }
}
