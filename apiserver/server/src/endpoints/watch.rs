//! Watch: a chunked stream of newline-delimited watch events, served from the watch cache
//! (upstream `handlers/watch.go` and the cacher's `cacheWatcher`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::FieldError;
use ferrokube_storage::watch_cache::{CacheEvent, CacheWatchStream};
use ferrokube_storage::{Event, EventKind, KeyValue, Revision};
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Scope;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::Output;
use crate::registry::ResourceHandle;
use crate::registry::codec;
use crate::registry::store::{GenericStore, ListOptions, WatchOptions};
use crate::table;

/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

/// Everything the event encoder needs.
struct Encoder {
    handle: Arc<ResourceHandle>,
    opts: ListOptions,
    table: Option<&'static str>,
    /// `as=PartialObjectMetadata` (client-go's metadata informers): events carry the objects'
    /// metadata as PartialObjectMetadata of this meta.k8s.io version, bookmarks too (upstream
    /// transforms every event's object).
    partial: Option<&'static str>,
    include: crate::negotiate::IncludeObject,
    sent_columns: bool,
    bookmarks: bool,
}

impl Encoder {
    async fn frame(&mut self, kind: &str, kv: &KeyValue) -> ApiResult<Bytes> {
        let mut out = Vec::with_capacity(kv.value.len() + 64);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        match self.table {
            None if self.partial.is_some() => self.write_partial(&mut out, kv).await?,
            None => codec::write_served(&self.handle, &mut out, kv).await?,
            Some(v) => {
                let obj = codec::decode_served(&self.handle, kv).await?;
                let meta = json!({"resourceVersion": kv.mod_revision.to_string()});
                let t = table::to_table(
                    &self.handle,
                    vec![obj],
                    meta,
                    v,
                    self.include,
                    !self.sent_columns,
                );
                self.sent_columns = true;
                out.extend_from_slice(&serde_json::to_vec(&t).map_err(ApiError::Encoding)?);
            }
        }
        out.extend_from_slice(b"}\n");
        Ok(Bytes::from(out))
    }

    /// An object as PartialObjectMetadata: its metadata cut out of the stored bytes when they
    /// are of the served version, else decoded.
    async fn write_partial(&self, out: &mut Vec<u8>, kv: &KeyValue) -> ApiResult<()> {
        let v = self.partial.unwrap_or("v1");
        if codec::splices(&self.handle, kv)
            && let Some(range) = codec::metadata_range(&kv.value)
        {
            codec::write_partial_metadata(out, v, &kv.value, range, kv.mod_revision);
            return Ok(());
        }
        let obj = codec::decode_served(&self.handle, kv).await?;
        serde_json::to_writer(out, &table::partial_metadata(&obj, v)).map_err(ApiError::Encoding)
    }

    fn bookmark(&self, rev: Revision, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = match self.partial {
            Some(v) => json!({"kind": "PartialObjectMetadata",
                "apiVersion": format!("meta.k8s.io/{v}"), "metadata": meta}),
            None => json!({"kind": self.handle.info.kind,
                "apiVersion": self.handle.info.api_version(), "metadata": meta}),
        };
        let mut v =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }

    fn error(status: &Status) -> Bytes {
        let mut v =
            serde_json::to_vec(&json!({"type": "ERROR", "object": status})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }

    fn matches(&self, kv: &KeyValue) -> ApiResult<bool> {
        if self.opts.label_selector.is_empty() && self.opts.field_selector.is_empty() {
            return Ok(true);
        }
        let obj: Value = serde_json::from_slice(&kv.value).map_err(ApiError::Encoding)?;
        Ok(GenericStore::matches(&self.handle, &self.opts, &obj))
    }

    /// The wire event for a storage event, after selector transitions (None: filtered out).
    async fn event(&mut self, ev: &Event) -> ApiResult<Option<Bytes>> {
        if ev.kind == EventKind::Progress {
            // Not an object change (the watch cache does not pass these on).
            return Ok(None);
        }
        let cur = self.matches(&ev.kv)?;
        let prev = match &ev.prev {
            Some(p) => self.matches(p)?,
            None => false,
        };
        match ev.kind {
            EventKind::Delete => {
                if cur {
                    self.frame("DELETED", &ev.kv).await.map(Some)
                } else {
                    Ok(None)
                }
            }
            EventKind::Put => match (prev, cur) {
                (false, true) => self.frame("ADDED", &ev.kv).await.map(Some),
                (true, true) => self.frame("MODIFIED", &ev.kv).await.map(Some),
                (true, false) => {
                    // Left the selection: a DELETED with the previous content at this revision.
                    let p = ev.prev.as_ref().map(|p| KeyValue {
                        mod_revision: ev.kv.mod_revision,
                        ..(**p).clone()
                    });
                    match p {
                        Some(p) => self.frame("DELETED", &p).await.map(Some),
                        None => Ok(None),
                    }
                }
                (false, false) => Ok(None),
            },
            EventKind::Progress => Ok(None),
        }
    }
}

/// Decrements the watch gauge when a watch ends.
struct WatchGuard(Arc<AppState>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.metrics.watch_ended();
    }
}

/// One watch's frames: the initial ones, then the watch cache's events encoded, until the
/// timeout, the end of the stream or an error (sent as an ERROR event).
struct Feed {
    enc: Encoder,
    initial: std::vec::IntoIter<Bytes>,
    stream: Result<CacheWatchStream, Status>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
    _guard: WatchGuard,
}

impl Feed {
    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let stream = match &mut self.stream {
            Ok(s) => s,
            Err(status) => {
                self.done = true;
                return Some(Encoder::error(status));
            }
        };
        if let Some(f) = self.initial.next() {
            return Some(f);
        }
        loop {
            let item = tokio::select! {
                _ = &mut self.deadline => {
                    self.done = true;
                    return None;
                }
                item = stream.next() => item,
            };
            match item {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Ok(CacheEvent::Event(ev))) => match self.enc.event(&ev).await {
                    Ok(Some(f)) => return Some(f),
                    Ok(None) => {}
                    Err(e) => return Some(Encoder::error(&e.to_status())),
                },
                Some(Ok(CacheEvent::Progress(rev))) => {
                    if self.enc.bookmarks && self.enc.table.is_none() {
                        return Some(self.enc.bookmark(rev, false));
                    }
                }
                Some(Err(e)) => {
                    // 410 Expired for a compacted revision, as every storage error: mapped in
                    // `error.rs`.
                    self.done = true;
                    return Some(Encoder::error(&ApiError::from(e).to_status()));
                }
            }
        }
    }
}

/// Handles watch.
pub async fn watch(scope: &Scope) -> ApiResult<Response> {
    let (table, partial) = match scope.output()? {
        Output::Table(v) => (Some(v), None),
        Output::PartialMetadata(v) => (None, Some(v)),
        _ => (None, None),
    };
    let opts = scope.query.list_options()?;
    let bookmarks = scope.query.flag("allowWatchBookmarks");
    let send_initial = scope
        .query
        .get("sendInitialEvents")
        .map(|v| v == "true" || v == "1");
    let rv = opts.resource_version.clone().unwrap_or_default();
    if send_initial.is_some() {
        let mut errs = Vec::new();
        if opts.resource_version_match.as_deref() != Some("NotOlderThan") {
            errs.push(FieldError::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if send_initial == Some(true) && !bookmarks {
            errs.push(FieldError::forbidden(
                "allowWatchBookmarks",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", &errs));
        }
    }
    let timeout = match scope
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
    {
        Some(t) if t > 0 => Duration::from_secs(t),
        // Upstream: a random duration between min-request-timeout (1800 s) and twice that.
        _ => Duration::from_secs(1800 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 7),
    };
    let watch_opts = WatchOptions {
        resource_version: rv.clone(),
        send_initial_events: send_initial,
        progress_interval: bookmarks.then_some(BOOKMARK_INTERVAL),
    };
    let started = scope
        .state
        .store
        .watch(&scope.handle, &scope.info.namespace, &opts, &watch_opts)
        .await?;
    let mut enc = Encoder {
        handle: scope.handle.clone(),
        opts,
        table,
        partial,
        include: scope.query.include_object(),
        sent_columns: false,
        bookmarks,
    };
    // Initial frames (synthetic ADDED events), then the stream of what follows.
    let mut initial: Vec<Bytes> = Vec::new();
    for kv in &started.initial {
        if enc.matches(kv)? {
            initial.push(enc.frame("ADDED", kv).await?);
        }
    }
    if send_initial == Some(true)
        && let Some(rev) = started.initial_revision
    {
        initial.push(enc.bookmark(rev, true));
    }
    scope.state.metrics.watch_started();
    let feed = Feed {
        enc,
        initial: initial.into_iter(),
        stream: started.stream,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        done: false,
        _guard: WatchGuard(scope.state.clone()),
    };
    let body = if scope.http_version == http::Version::HTTP_2 {
        // The stream's own task (hyper's, one per HTTP/2 stream) polls the feed: no task and
        // channel of ours per watch, and the connection's other streams are not held up.
        Body::from_stream(futures::stream::unfold(feed, |mut feed| async move {
            let frame = feed.next_frame().await?;
            Some((Ok::<_, std::io::Error>(frame), feed))
        }))
    } else {
        // A task per watch encodes while the connection's task writes (polled inline by the
        // HTTP/1.1 connection, the encoding waited behind each write: slower fan-out).
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
        tokio::spawn(async move {
            let mut feed = feed;
            loop {
                let frame = tokio::select! {
                    _ = tx.closed() => return,
                    f = feed.next_frame() => f,
                };
                let Some(frame) = frame else { return };
                if tx.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
        });
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}
