//! Value transformers (upstream `k8s.io/apiserver/pkg/storage/value`): a [`TransformingStorage`]
//! wraps any backend and passes every value through the [`Transformer`] its key selects on the
//! way in and out, so encryption at rest (or any other encoding) sits at one seam for every
//! backend. The transformer sees the key (authenticated data for AEAD ciphers) and bytes only.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use crate::{
    Event, KeyValue, ListRequest, ListResponse, Result, Revision, Storage, StorageError,
    WatchStream,
};

/// Turns stored bytes into plain bytes and back.
pub trait Transformer: Send + Sync + 'static {
    /// The bytes to store for `plain` at `key`.
    fn seal_for_storage(&self, key: &str, plain: &[u8]) -> std::result::Result<Vec<u8>, String>;
    /// The plain bytes of a stored value at `key`.
    fn open_stored(&self, key: &str, stored: &[u8]) -> std::result::Result<Vec<u8>, String>;
}

/// Picks the transformer of a key (None: stored as is).
pub trait TransformerSelector: Send + Sync + 'static {
    fn select(&self, key: &str) -> Option<&dyn Transformer>;
}

/// A backend whose values pass through transformers.
pub struct TransformingStorage {
    inner: Arc<dyn Storage>,
    selector: Arc<dyn TransformerSelector>,
}

impl TransformingStorage {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>, selector: Arc<dyn TransformerSelector>) -> Self {
        TransformingStorage { inner, selector }
    }
}

fn write_value(sel: &dyn TransformerSelector, key: &str, plain: &Bytes) -> Result<Bytes> {
    match sel.select(key) {
        None => Ok(plain.clone()),
        Some(t) => t
            .seal_for_storage(key, plain)
            .map(Bytes::from)
            .map_err(|e| StorageError::Backend(format!("unable to transform key {key:?}: {e}"))),
    }
}

fn read_kv(sel: &dyn TransformerSelector, mut kv: KeyValue) -> Result<KeyValue> {
    if let Some(t) = sel.select(&kv.key) {
        let plain = t.open_stored(&kv.key, &kv.value).map_err(|e| {
            StorageError::Backend(format!("unable to transform key {:?}: {e}", kv.key))
        })?;
        kv.value = Bytes::from(plain);
    }
    Ok(kv)
}

fn read_event(sel: &dyn TransformerSelector, e: Event) -> Result<Event> {
    if e.kind == crate::EventKind::Progress {
        return Ok(e);
    }
    Ok(Event {
        kind: e.kind,
        kv: read_kv(sel, e.kv)?,
        prev: e.prev.map(|p| read_kv(sel, p)).transpose()?,
    })
}

#[async_trait::async_trait]
impl Storage for TransformingStorage {
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner
            .get(key)
            .await?
            .map(|kv| read_kv(&*self.selector, kv))
            .transpose()
    }

    async fn list(&self, req: ListRequest) -> Result<ListResponse> {
        let mut resp = self.inner.list(req).await?;
        let items = std::mem::take(&mut resp.items);
        resp.items = items
            .into_iter()
            .map(|kv| read_kv(&*self.selector, kv))
            .collect::<Result<_>>()?;
        Ok(resp)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let stored = write_value(&*self.selector, key, &value)?;
        let mut kv = self.inner.create(key, stored).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        let stored = write_value(&*self.selector, key, &value)?;
        let mut kv = self
            .inner
            .update(key, stored, expected_mod_revision)
            .await?;
        kv.value = value;
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue> {
        let kv = self.inner.delete(key, expected_mod_revision).await?;
        read_kv(&*self.selector, kv)
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        let stream = self.inner.watch(prefix, after_revision).await?;
        let sel = self.selector.clone();
        Ok(Box::pin(
            stream.map(move |item| item.and_then(|e| read_event(&*sel, e))),
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }

    async fn request_watch_progress(&self) -> Result<bool> {
        self.inner.request_watch_progress().await
    }

    fn revision_may_outrun_watch(&self) -> bool {
        self.inner.revision_may_outrun_watch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    /// Reverses the bytes of keys under `/s/` and adds a marker.
    struct Rev;
    impl Transformer for Rev {
        fn seal_for_storage(
            &self,
            _key: &str,
            plain: &[u8],
        ) -> std::result::Result<Vec<u8>, String> {
            let mut v = b"enc:".to_vec();
            v.extend(plain.iter().rev());
            Ok(v)
        }
        fn open_stored(&self, _key: &str, stored: &[u8]) -> std::result::Result<Vec<u8>, String> {
            let body = stored.strip_prefix(b"enc:").ok_or("no prefix")?;
            Ok(body.iter().rev().copied().collect())
        }
    }
    struct Sel(Rev);
    impl TransformerSelector for Sel {
        fn select(&self, key: &str) -> Option<&dyn Transformer> {
            key.starts_with("/s/")
                .then_some(&self.0 as &dyn Transformer)
        }
    }

    #[tokio::test]
    async fn values_are_transformed_both_ways() {
        let raw: Arc<dyn Storage> = MemoryStore::new();
        let t = TransformingStorage::new(raw.clone(), Arc::new(Sel(Rev)));
        let mut w = t.watch("/", 1).await.expect("watch");
        t.create("/s/a", Bytes::from_static(b"abc"))
            .await
            .expect("create");
        t.create("/p/a", Bytes::from_static(b"abc"))
            .await
            .expect("create");
        assert_eq!(
            raw.get("/s/a").await.expect("get").expect("kv").value,
            &b"enc:cba"[..]
        );
        assert_eq!(
            raw.get("/p/a").await.expect("get").expect("kv").value,
            &b"abc"[..]
        );
        assert_eq!(
            t.get("/s/a").await.expect("get").expect("kv").value,
            &b"abc"[..]
        );
        let l = t
            .list(ListRequest {
                prefix: "/".into(),
                ..Default::default()
            })
            .await
            .expect("list");
        assert!(l.items.iter().all(|kv| kv.value == b"abc"[..]));
        let e = w.next().await.expect("event").expect("ok");
        assert_eq!(e.kv.value, &b"abc"[..]);
        let d = t.delete("/s/a", None).await.expect("delete");
        assert_eq!(d.value, &b"abc"[..]);
        // A value the transformer cannot read is an error, not garbage.
        raw.create("/s/b", Bytes::from_static(b"plain"))
            .await
            .expect("create");
        assert!(t.get("/s/b").await.is_err());
    }
}
