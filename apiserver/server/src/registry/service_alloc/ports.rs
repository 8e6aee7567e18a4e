//! Node ports, kept as upstream keeps them: one `RangeAllocation` object at
//! `/registry/ranges/servicenodeports` whose `data` is a bitmap of the range (bit i = port
//! base+i), changed only by compare-and-swap (upstream `allocator/storage.Etcd` over
//! `portallocator`), so several API servers on one etcd never hand out a port twice.

use base64::Engine;
use ferrokube_storage::{KeyValue, Storage, StorageError, guaranteed_update};
use serde_json::{Value, json};

use super::net::PortRange;
use crate::registry::store::now_rfc3339;

/// The storage key of the node port bitmap (upstream's).
pub const KEY: &str = "/registry/ranges/servicenodeports";

/// Why a port could not be reserved (upstream `portallocator` errors).
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// `ErrAllocated`.
    #[error("provided port is already allocated")]
    Allocated,
    /// `ErrNotInRange`.
    #[error("provided port is not in the valid range. The range of valid ports is {0}")]
    NotInRange(String),
    /// `ErrFull`.
    #[error("range is full")]
    Full,
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// One port a service asks for: a given one, or any free one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRequest {
    Specific(i64),
    Next,
}

/// The bitmap of a range.
#[derive(Clone, Debug)]
pub struct Bitmap {
    range: PortRange,
    bits: Vec<u8>,
}

impl Bitmap {
    pub fn empty(range: &PortRange) -> Self {
        Bitmap {
            range: range.clone(),
            bits: vec![0; usize::from(range.size).div_ceil(8)],
        }
    }

    /// The stored bitmap, or an empty one when absent or of another range (a changed flag).
    pub fn decode(kv: Option<&KeyValue>, range: &PortRange) -> Self {
        let mut map = Bitmap::empty(range);
        let Some(obj) = kv.and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok()) else {
            return map;
        };
        if obj.get("range").and_then(Value::as_str) != Some(range.spec().as_str()) {
            tracing::warn!(
                stored = ?obj.get("range"),
                range = %range.spec(),
                "the node port range changed; the repair loop rebuilds the allocation"
            );
        }
        let data = obj
            .get("data")
            .and_then(Value::as_str)
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .unwrap_or_default();
        for (i, b) in data.iter().enumerate().take(map.bits.len()) {
            map.bits[i] = *b;
        }
        map
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let obj = json!({
            "apiVersion": "v1",
            "kind": "RangeAllocation",
            "metadata": {"name": "", "creationTimestamp": now_rfc3339()},
            "range": self.range.spec(),
            "data": base64::engine::general_purpose::STANDARD.encode(&self.bits),
        });
        serde_json::to_vec(&obj).unwrap_or_default()
    }

    fn index(&self, port: i64) -> Option<usize> {
        self.range
            .contains(port)
            .then(|| (port - i64::from(self.range.base)) as usize)
    }

    pub fn has(&self, port: i64) -> bool {
        self.index(port)
            .is_some_and(|i| self.bits[i / 8] & (1 << (i % 8)) != 0)
    }

    pub fn set(&mut self, port: i64, on: bool) {
        if let Some(i) = self.index(port) {
            if on {
                self.bits[i / 8] |= 1 << (i % 8);
            } else {
                self.bits[i / 8] &= !(1 << (i % 8));
            }
        }
    }

    /// The set ports, ascending.
    pub fn ports(&self) -> Vec<i64> {
        (0..i64::from(self.range.size))
            .map(|i| i + i64::from(self.range.base))
            .filter(|p| self.has(*p))
            .collect()
    }

    /// A free port: random in the upper band first (upstream leaves the lower band to
    /// requested ports, `calculateRangeOffset`), then anywhere.
    fn next_free(&self) -> Option<i64> {
        let size = i64::from(self.range.size);
        let offset = if size < 16 {
            0
        } else {
            (size / 32).clamp(16, 128)
        };
        let random = i64::from(u16::from_be_bytes({
            let b = uuid::Uuid::new_v4().into_bytes();
            [b[0], b[1]]
        }));
        let base = i64::from(self.range.base);
        let upper = size - offset;
        (0..upper)
            .map(|i| offset + (random + i) % upper)
            .chain(0..offset)
            .map(|i| base + i)
            .find(|p| !self.has(*p))
    }
}

/// Reserves ports in one compare-and-swap: `requests[i]` becomes the port of entry i. On
/// failure, the index of the request that failed and why. `dry_run` reads only.
pub async fn allocate(
    storage: &dyn Storage,
    range: &PortRange,
    requests: &[PortRequest],
    dry_run: bool,
) -> Result<Vec<i64>, (usize, PortError)> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let mut outcome: Vec<i64> = Vec::new();
    let plan =
        |current: Option<&KeyValue>, out: &mut Vec<i64>| -> Result<Bitmap, (usize, PortError)> {
            let mut map = Bitmap::decode(current, range);
            out.clear();
            for (i, r) in requests.iter().enumerate() {
                let port = match r {
                    PortRequest::Specific(p) => {
                        if !range.contains(*p) {
                            return Err((i, PortError::NotInRange(range.spec())));
                        }
                        if map.has(*p) {
                            return Err((i, PortError::Allocated));
                        }
                        *p
                    }
                    PortRequest::Next => map.next_free().ok_or((i, PortError::Full))?,
                };
                map.set(port, true);
                out.push(port);
            }
            Ok(map)
        };
    if dry_run {
        let current = storage.get(KEY).await.map_err(|e| (0, e.into()))?;
        plan(current.as_ref(), &mut outcome)?;
        return Ok(outcome);
    }
    let mut failure = None;
    let result = guaranteed_update(storage, KEY, |current| match plan(current, &mut outcome) {
        Ok(map) => Ok(map.encode().into()),
        Err(e) => {
            failure = Some(e);
            Err(StorageError::Backend("node port allocation refused".into()))
        }
    })
    .await;
    match (result, failure) {
        (_, Some(f)) => Err(f),
        (Ok(_), None) => Ok(outcome),
        (Err(e), None) => Err((0, e.into())),
    }
}

/// Frees ports (ports outside the range or not set are ignored).
pub async fn release(storage: &dyn Storage, range: &PortRange, ports: &[i64]) {
    if ports.is_empty() {
        return;
    }
    let result = guaranteed_update(storage, KEY, |current| {
        let mut map = Bitmap::decode(current, range);
        for p in ports {
            map.set(*p, false);
        }
        Ok::<_, StorageError>(map.encode().into())
    })
    .await;
    if let Err(e) = result {
        tracing::warn!(?ports, error = %e, "releasing service node ports");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_round_trips_and_prefers_the_upper_band() {
        let range = PortRange::parse("30000-32767").unwrap_or_else(|e| panic!("{e}"));
        let mut map = Bitmap::empty(&range);
        map.set(30000, true);
        map.set(32767, true);
        map.set(40000, true);
        let kv = KeyValue {
            key: KEY.into(),
            value: map.encode().into(),
            create_revision: 2,
            mod_revision: 2,
        };
        let back = Bitmap::decode(Some(&kv), &range);
        assert_eq!(back.ports(), vec![30000, 32767]);
        for _ in 0..50 {
            let p = back.next_free().unwrap_or_else(|| panic!("full"));
            assert!((30000 + 86..=32767).contains(&p) && !back.has(p), "{p}");
        }
        let tiny = PortRange::parse("30000-30001").unwrap_or_else(|e| panic!("{e}"));
        let mut t = Bitmap::empty(&tiny);
        t.set(30000, true);
        assert_eq!(t.next_free(), Some(30001));
        t.set(30001, true);
        assert_eq!(t.next_free(), None);
    }
}
