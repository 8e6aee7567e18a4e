//! The etcd v3 backend: the [`Storage`] trait on an etcd cluster, with the `etcd-client` crate.
//!
//! Start at [`EtcdStore::connect`]. The mapping is one to one, as upstream's `etcd3` store:
//!
//! * A storage key `K` lives at the etcd key `prefix + K` ([`EtcdOptions::prefix`]); keys outside
//!   the prefix are invisible. resourceVersion = etcd `mod_revision`: the store's revision *is*
//!   etcd's revision, so several API servers on one etcd share one revision line.
//! * `create` = `txn(create_revision(k) == 0 → put, else get)`; `update` =
//!   `txn(create_revision(k) > 0 ∧ mod_revision(k) == expected → put, else get)`; `delete` the
//!   same with a delete. The `else get` tells `NotFound` from `Conflict` (with the current mod
//!   revision) in the same round trip. Failed compares write nothing, so they do not bump the
//!   revision (etcd semantics, as the embedded store).
//! * `list` = one range `[prefix + start_after + "\0", prefix_end)` with `limit` and a fixed
//!   `revision`, so every page of a paginated list reads one snapshot; `count` gives
//!   `remaining`. A revision at or below the highest compaction this process knows of fails
//!   with `Compacted` (as the embedded store: the compacted revision itself is not readable);
//!   etcd's own `ErrCompacted`/`ErrFutureRev` map to `Compacted`/`FutureRevision`.
//! * `watch` (`watch.rs`) = an etcd watch on the prefix from `after + 1` with `prev_kv` and
//!   `progress_notify`; a delete event carries the last value (etcd sends only the key);
//!   `compact_revision` on a cancelled watch becomes `Compacted` (HTTP 410 upstream).
//! * Compaction: [`Storage::compact`] and, with [`EtcdOptions::compaction_interval`], a
//!   compactor task that, like upstream's, compacts every interval up to the revision it saw
//!   one interval earlier. Compacting at or below etcd's compacted revision is a no-op.
//! * Connections: one `etcd-client` channel balanced over every endpoint; a dropped
//!   connection is re-dialled by the channel on the next request, with HTTP/2 keep-alives so
//!   a dead member is noticed; watches that break end with an error and the watch cache's
//!   reflector re-opens them with exponential back-off. Every unary request has a deadline
//!   ([`EtcdOptions::request_timeout`]), reported as [`StorageError::Unavailable`].

pub mod migrate;
mod watch;

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};

use crate::{
    KeyValue, ListRequest, ListResponse, Result, Revision, Storage, StorageError, WatchStream,
};

/// TLS material for the etcd connection (PEM), as `--etcd-cafile/--etcd-certfile/--etcd-keyfile`.
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    /// CA bundle that signs the etcd members' serving certificates (None: the system roots are
    /// not consulted, so this is required for https endpoints in practice).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key (PEM), for etcd's `--client-cert-auth`.
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
}

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// `http(s)://host:port` of every member.
    pub endpoints: Vec<String>,
    /// TLS (needed for `https://` endpoints).
    pub tls: Option<EtcdTls>,
    /// Prepended to every storage key (no trailing slash needed; may be empty).
    pub prefix: String,
    /// Period of the automatic compactor (None: only explicit `compact`).
    pub compaction_interval: Option<Duration>,
    /// Deadline of every unary request (reads, writes, compaction).
    pub request_timeout: Duration,
    /// Deadline for establishing a connection to a member.
    pub dial_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            tls: None,
            prefix: String::new(),
            compaction_interval: Some(Duration::from_secs(300)),
            request_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(5),
        }
    }
}

/// The etcd-backed store. See the module docs.
pub struct EtcdStore {
    client: Client,
    prefix: String,
    request_timeout: Duration,
    /// The highest compacted revision this process has seen (its own compactions, etcd's
    /// compaction errors and cancelled watches).
    compacted: AtomicI64,
    /// Bumped by [`Storage::request_watch_progress`]: every open watch stream then sends etcd
    /// a `WatchProgressRequest` (etcd answers each stream, not each watch).
    progress_requests: tokio::sync::watch::Sender<u64>,
    /// Whether the etcd orders progress answers after the events they cover (see
    /// [`progress_requests_are_safe`]); requests are sent only then.
    progress_safe: bool,
}

/// Upstream's `endpointSupportsRequestWatchProgress`: etcd before 3.4.31 and 3.5.0–3.5.12 may
/// answer a `WatchProgressRequest` with a revision whose events it has not yet sent on the
/// stream (etcd issues 15220 and 17507) — trusting it would make the watch cache skip them.
pub(crate) fn progress_requests_are_safe(version: &str) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u64>().ok());
    let (Some(Some(major)), Some(Some(minor)), Some(Some(patch))) =
        (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    match (major, minor) {
        (3, 4) => patch >= 31,
        (3, 5) => patch >= 13,
        (3, m) => m > 5,
        (m, _) => m > 3,
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Largest gRPC message accepted from etcd (tonic's default of 4 MiB would fail an unpaged
/// list of a big prefix; etcd itself bounds requests with `--max-request-bytes`).
pub(crate) const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// The key probed by revision reads: a key under the prefix that is never written.
const PROBE_KEY: &str = "\u{0}ferrokube-probe";

/// The first key after every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix is empty): the range runs to the end of the keyspace.
    vec![0]
}

/// What an etcd error means for a caller.
pub(crate) fn map_error(e: etcd_client::Error) -> StorageError {
    use etcd_client::Error as E;
    match &e {
        E::GRpcStatus(status) => match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                StorageError::Unavailable(format!("etcd: {}", status.message()))
            }
            // The connection to the member broke mid-request (the member died): the outcome
            // is unknown, as for a timeout, and the client may retry.
            tonic::Code::Unknown | tonic::Code::Internal
                if status.message().contains("transport error")
                    || status.message().contains("h2 protocol error") =>
            {
                StorageError::Unavailable(format!("etcd: {}", status.message()))
            }
            _ => StorageError::Backend(format!("etcd: {}", status.message())),
        },
        E::TransportError(_) | E::IoError(_) => StorageError::Unavailable(format!("etcd: {e}")),
        _ => StorageError::Backend(format!("etcd: {e}")),
    }
}

fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("required revision has been compacted"))
}

fn is_future_rev(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("required revision is a future revision"))
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    h.map(|h| h.revision())
        .ok_or_else(|| StorageError::Backend("etcd response without a header".into()))
}

impl EtcdStore {
    /// Connects to etcd (the channel dials lazily per member; this call checks that one
    /// member answers a linearizable read within the dial and request deadlines) and, when
    /// configured, starts the compactor. Must be called within a tokio runtime.
    pub async fn connect(opts: EtcdOptions) -> Result<Arc<EtcdStore>> {
        if opts.endpoints.is_empty() {
            return Err(StorageError::Backend("no etcd endpoints given".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(opts.dial_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(tls) = &opts.tls {
            let mut t = etcd_client::TlsOptions::new();
            if let Some(ca) = &tls.ca_pem {
                t = t.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            match (&tls.client_cert_pem, &tls.client_key_pem) {
                (Some(cert), Some(key)) => {
                    t = t.identity(etcd_client::Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => {
                    return Err(StorageError::Backend(
                        "an etcd client certificate needs both the certificate and the key".into(),
                    ));
                }
            }
            connect = connect.with_tls(t);
        }
        let client = tokio::time::timeout(
            opts.dial_timeout + opts.request_timeout,
            Client::connect(&opts.endpoints, Some(connect)),
        )
        .await
        .map_err(|_| StorageError::Unavailable("etcd: connecting timed out".into()))?
        .map_err(map_error)?;
        let mut store = EtcdStore {
            client,
            prefix: opts.prefix.clone(),
            request_timeout: opts.request_timeout,
            compacted: AtomicI64::new(0),
            progress_requests: tokio::sync::watch::Sender::new(0),
            progress_safe: false,
        };
        // The member we talk to speaks for the cluster's version (members of one cluster run
        // one version outside of rolling upgrades).
        let mut c = store.client.clone();
        let version = match store.timed("status", c.status()).await {
            Ok(s) => s.version().to_string(),
            Err(e) => {
                let e = e.into_storage();
                tracing::warn!(error = %e, "etcd: version unknown; no watch progress requests");
                String::new()
            }
        };
        let progress_safe = progress_requests_are_safe(&version);
        store.progress_safe = progress_safe;
        let store = Arc::new(store);
        if !progress_safe {
            tracing::warn!(%version, "etcd before 3.4.31/3.5.13: no watch progress requests (consistent reads may wait for writes of other --etcd-prefix tenants)");
        }
        let current = store.current_revision().await?;
        if let Some(interval) = opts.compaction_interval {
            tokio::spawn(run_compactor(Arc::downgrade(&store), interval));
        }
        tracing::info!(endpoints = ?opts.endpoints, prefix = %opts.prefix, current, "etcd store connected");
        Ok(store)
    }

    /// A cheap linearizable read with the request deadline: what `/readyz`'s `etcd` check runs.
    /// Fails when no member with a leader answers.
    pub async fn check(&self) -> Result<()> {
        self.current_revision().await.map(|_| ())
    }

    /// The etcd-client handle (for tools such as `ferrokube migrate`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Bumps etcd's revision by `n` with plain puts to the scratch key `key` (`concurrency`
    /// in flight), then deletes it (one more revision). See [`migrate`].
    pub(crate) async fn bump_revision(&self, n: u64, key: &str, concurrency: usize) -> Result<()> {
        use futures::{StreamExt, TryStreamExt};
        if n == 0 {
            return Ok(());
        }
        let k = self.etcd_key(key);
        futures::stream::iter(0..n)
            .map(|_| {
                let k = k.clone();
                async move {
                    self.call("put", Retry::Write, |mut kv| {
                        let k = k.clone();
                        async move { kv.put(k, Vec::new(), None).await }
                    })
                    .await
                    .map(|_| ())
                    .map_err(RequestError::into_storage)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        self.call("delete", Retry::Write, |mut kv| {
            let k = k.clone();
            async move { kv.delete(k, None).await }
        })
        .await
        .map_err(RequestError::into_storage)?;
        Ok(())
    }

    /// The etcd key of storage key `key`.
    fn etcd_key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// The storage key of an etcd key (None when outside the prefix or not UTF-8).
    pub(crate) fn storage_key(prefix: &str, key: &[u8]) -> Option<String> {
        let rest = key.strip_prefix(prefix.as_bytes())?;
        String::from_utf8(rest.to_vec()).ok()
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        let key = Self::storage_key(&self.prefix, kv.key()).ok_or_else(|| {
            StorageError::Backend(format!(
                "etcd returned a key outside the prefix {:?}",
                self.prefix
            ))
        })?;
        Ok(KeyValue {
            key: key.into(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    /// Runs `f` on a KV client until it succeeds, fails for good, or the request deadline
    /// passes. Retried with back-off (20 ms doubling to 1 s): reads on any `Unavailable` (a
    /// dead member, no leader), writes only when the request cannot have reached etcd (the
    /// connection to the chosen member was refused), so a write is never applied twice.
    async fn call<T, Fut>(
        &self,
        what: &str,
        retry: Retry,
        mut f: impl FnMut(etcd_client::KvClient) -> Fut,
    ) -> std::result::Result<T, RequestError>
    where
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut delay = Duration::from_millis(20);
        loop {
            match tokio::time::timeout_at(deadline, f(self.kv())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e))
                    if retryable(&e, retry) && tokio::time::Instant::now() + delay < deadline =>
                {
                    tracing::debug!(error = %e, what, ?delay, "etcd request failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Ok(Err(e)) => return Err(RequestError::Etcd(e)),
                Err(_) => {
                    return Err(RequestError::Timeout(format!(
                        "etcd: {what} did not complete within {:?}",
                        self.request_timeout
                    )));
                }
            }
        }
    }

    /// Runs `f` with the request deadline.
    async fn timed<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> std::result::Result<T, RequestError> {
        match tokio::time::timeout(self.request_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RequestError::Etcd(e)),
            Err(_) => Err(RequestError::Timeout(format!(
                "etcd: {what} did not complete within {:?}",
                self.request_timeout
            ))),
        }
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse> {
        self.call("transaction", Retry::Write, |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(RequestError::into_storage)
    }

    fn note_compacted(&self, revision: Revision) {
        self.compacted.fetch_max(revision, Ordering::AcqRel);
    }

    /// etcd's compacted revision: the lowest revision still readable. Found with count-only
    /// reads of a never-written key (etcd answers `ErrCompacted` below it), starting from the
    /// highest compaction this process knows of; a binary search when another process
    /// compacted further.
    async fn probe_compacted(&self) -> Result<Revision> {
        let known = self.compacted.load(Ordering::Acquire);
        let readable = |rev: Revision| async move {
            let opts = GetOptions::new().with_count_only().with_revision(rev);
            let key = self.etcd_key(PROBE_KEY);
            let read = self.call("read", Retry::Read, |mut kv| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { kv.get(key, Some(opts)).await }
            });
            match read.await {
                Ok(_) => Ok(true),
                Err(RequestError::Etcd(e)) if is_compacted(&e) => Ok(false),
                Err(e) => Err(e.into_storage()),
            }
        };
        let low = known.max(1);
        if readable(low).await? {
            return Ok(known);
        }
        // `low` is compacted away; the compacted revision is in (low, current].
        let (mut lo, mut hi) = (low, self.current_revision().await?);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if readable(mid).await? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        self.note_compacted(hi);
        Ok(hi)
    }

    async fn compacted_error(&self, requested: Revision) -> StorageError {
        let compacted = match self.probe_compacted().await {
            Ok(c) => c,
            Err(_) => self.compacted.load(Ordering::Acquire),
        };
        StorageError::Compacted {
            requested,
            compacted,
        }
    }

    async fn run_compaction(&self, revision: Revision) -> Result<()> {
        if revision <= self.compacted.load(Ordering::Acquire) {
            return Ok(());
        }
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StorageError::FutureRevision {
                requested: revision,
                current,
            });
        }
        let compaction = self.call("compaction", Retry::Read, |mut kv| async move {
            kv.compact(revision, None).await
        });
        match compaction.await {
            Ok(_) => {
                tracing::info!(revision, "etcd compacted");
            }
            // Another API server compacted further already.
            Err(RequestError::Etcd(e)) if is_compacted(&e) => {}
            Err(e) => return Err(e.into_storage()),
        }
        self.note_compacted(revision);
        Ok(())
    }
}

/// Which failures [`EtcdStore::call`] retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Idempotent: any `Unavailable`.
    Read,
    /// Not idempotent: only failures before the request was sent.
    Write,
}

/// Whether `e` may be retried under `retry` (see [`EtcdStore::call`]).
fn retryable(e: &etcd_client::Error, retry: Retry) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unavailable => {
            retry == Retry::Read || never_sent(s)
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// A connection that could not be established: the request never left this process.
fn never_sent(s: &tonic::Status) -> bool {
    let mut text = s.message().to_ascii_lowercase();
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        text.push_str(&e.to_string().to_ascii_lowercase());
        source = e.source();
    }
    text.contains("connection refused") || text.contains("tcp connect error")
}

/// A failed request: etcd's error, or our deadline.
enum RequestError {
    Etcd(etcd_client::Error),
    Timeout(String),
}

impl RequestError {
    fn into_storage(self) -> StorageError {
        match self {
            RequestError::Etcd(e) => map_error(e),
            RequestError::Timeout(msg) => StorageError::Unavailable(msg),
        }
    }
}

/// Upstream's compactor: every `interval`, compact up to the revision seen one interval ago.
async fn run_compactor(store: Weak<EtcdStore>, interval: Duration) {
    let mut previous: Option<Revision> = None;
    loop {
        tokio::time::sleep(interval).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        if let Some(target) = previous
            && let Err(e) = store.run_compaction(target).await
        {
            tracing::warn!(error = %e, target, "etcd compaction failed");
        }
        previous = store.current_revision().await.ok().or(previous);
    }
}

fn single_range(resp: &etcd_client::TxnResponse) -> Option<etcd_client::KeyValue> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    })
}

/// The error of an update or delete whose compare failed: the `else` branch read the key, so
/// its absence is NotFound and its presence a Conflict at its current revision.
fn failed_compare(resp: &etcd_client::TxnResponse, key: &str, expected: Revision) -> StorageError {
    match single_range(resp) {
        None => StorageError::NotFound {
            key: key.to_owned(),
        },
        Some(current) => StorageError::Conflict {
            key: key.to_owned(),
            expected,
            current: current.mod_revision(),
        },
    }
}

#[async_trait::async_trait]
impl Storage for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        let key = self.etcd_key(PROBE_KEY);
        let resp = self
            .call("read", Retry::Read, |mut kv| {
                let key = key.clone();
                async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await
            .map_err(RequestError::into_storage)?;
        header_revision(resp.header())
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let k = self.etcd_key(key);
        let resp = self
            .call("read", Retry::Read, |mut kv| {
                let k = k.clone();
                async move { kv.get(k, None).await }
            })
            .await
            .map_err(RequestError::into_storage)?;
        resp.kvs().first().map(|kv| self.convert(kv)).transpose()
    }

    async fn list(&self, req: ListRequest) -> Result<ListResponse> {
        if req.revision != 0 {
            let compacted = self.compacted.load(Ordering::Acquire);
            if req.revision <= compacted {
                return Err(StorageError::Compacted {
                    requested: req.revision,
                    compacted,
                });
            }
        }
        let prefix = self.etcd_key(&req.prefix);
        let start = match &req.start_after {
            Some(after) if after.as_str() >= req.prefix.as_str() => {
                let mut k = self.etcd_key(after);
                k.push(0);
                k
            }
            _ => prefix.clone(),
        };
        let mut opts = GetOptions::new().with_range(prefix_end(&prefix));
        if req.limit > 0 {
            opts = opts.with_limit(i64::try_from(req.limit).unwrap_or(i64::MAX));
        }
        if req.revision != 0 {
            opts = opts.with_revision(req.revision);
        }
        let range = self.call("range", Retry::Read, |mut kv| {
            let (start, opts) = (start.clone(), opts.clone());
            async move { kv.get(start, Some(opts)).await }
        });
        let resp = match range.await {
            Ok(resp) => resp,
            Err(RequestError::Etcd(e)) if is_compacted(&e) => {
                return Err(self.compacted_error(req.revision).await);
            }
            Err(RequestError::Etcd(e)) if is_future_rev(&e) => {
                return Err(StorageError::FutureRevision {
                    requested: req.revision,
                    current: self.current_revision().await?,
                });
            }
            Err(e) => return Err(e.into_storage()),
        };
        let revision = if req.revision == 0 {
            header_revision(resp.header())?
        } else {
            req.revision
        };
        let items = resp
            .kvs()
            .iter()
            .map(|kv| self.convert(kv))
            .collect::<Result<Vec<_>>>()?;
        let count = u64::try_from(resp.count()).unwrap_or(0);
        let remaining = count.saturating_sub(items.len() as u64);
        Ok(ListResponse {
            items,
            revision,
            more: resp.more(),
            remaining: if resp.more() { remaining } else { 0 },
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let k = self.etcd_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(k, Some(GetOptions::new().with_keys_only()))]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(StorageError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let rev = header_revision(resp.header())?;
        Ok(KeyValue {
            key: key.into(),
            value,
            create_revision: rev,
            mod_revision: rev,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        let k = self.etcd_key(key);
        let txn = Txn::new()
            .when([
                Compare::create_revision(k.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(k.clone(), CompareOp::Equal, expected_mod_revision),
            ])
            .and_then([TxnOp::put(
                k.clone(),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(k, Some(GetOptions::new().with_keys_only()))]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(failed_compare(&resp, key, expected_mod_revision));
        }
        let rev = header_revision(resp.header())?;
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(p) => p.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| StorageError::Backend("etcd put without its previous value".into()))?;
        Ok(KeyValue {
            key: key.into(),
            value,
            create_revision,
            mod_revision: rev,
        })
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue> {
        let k = self.etcd_key(key);
        let mut when = vec![Compare::create_revision(k.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected_mod_revision {
            when.push(Compare::mod_revision(k.clone(), CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::delete(
                k.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(k, Some(GetOptions::new().with_keys_only()))]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(failed_compare(
                &resp,
                key,
                expected_mod_revision.unwrap_or(0),
            ));
        }
        let rev = header_revision(resp.header())?;
        let prev = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(d) => d.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| {
                StorageError::Backend("etcd delete without its previous value".into())
            })?;
        let mut deleted = self.convert(&prev)?;
        deleted.mod_revision = rev;
        Ok(deleted)
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        let compacted = self.compacted.load(Ordering::Acquire);
        if after_revision < compacted {
            return Err(StorageError::Compacted {
                requested: after_revision,
                compacted,
            });
        }
        watch::open(self, prefix, after_revision).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.run_compaction(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.probe_compacted().await
    }

    async fn request_watch_progress(&self) -> Result<bool> {
        if !self.progress_safe {
            return Ok(false);
        }
        self.progress_requests
            .send_modify(|n| *n = n.wrapping_add(1));
        Ok(true)
    }

    fn revision_may_outrun_watch(&self) -> bool {
        !self.progress_safe
    }
}

#[cfg(test)]
mod tests {
    use super::{prefix_end, progress_requests_are_safe};

    #[test]
    fn watch_progress_requests_only_on_fixed_etcd_versions() {
        for (v, safe) in [
            ("3.4.23", false),
            ("3.4.30", false),
            ("3.4.31", true),
            ("3.5.12", false),
            ("3.5.13", true),
            ("3.6.0", true),
            ("v3.5.21", true),
            ("", false),
            ("garbage", false),
        ] {
            assert_eq!(progress_requests_are_safe(v), safe, "{v}");
        }
    }

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/registry/"), b"/registry0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
