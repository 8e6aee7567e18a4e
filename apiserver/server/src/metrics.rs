//! Prometheus metrics: request counts and latencies by verb/resource/code, watch counts, and
//! storage gauges, rendered as text at `/metrics`.
//!
//! Series are bounded: labels come only from fixed sets (verbs, response codes) and from the
//! resource table ([`RequestLabels`] is built by the filter chain), never from raw URL
//! segments; requests without an authenticated user only count by response code class.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The labels of one request, each from a bounded set.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestLabels {
    /// A kube verb or lower-cased HTTP method from a fixed set, else `other`.
    pub verb: &'static str,
    /// A group of the resource table, `other`, or empty (core group, non-resource paths).
    pub group: String,
    /// A resource (optionally `/subresource`) of the resource table, `other`, or empty.
    pub resource: String,
}

/// Verbs (kube verbs and HTTP methods of non-resource requests) that may appear as a label.
const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "proxy",
    "post",
    "put",
    "head",
    "options",
];

/// `verb` if it is one of the fixed verbs, else `other`.
pub fn clean_verb(verb: &str) -> &'static str {
    VERBS
        .iter()
        .find(|v| **v == verb)
        .copied()
        .unwrap_or("other")
}

/// Latency histogram buckets in seconds (upstream's apiserver_request_duration_seconds subset).
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

type RequestKey = (RequestLabels, u16);

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, u64>>,
    latencies: Mutex<BTreeMap<(&'static str, String), Histogram>>,
    watches: AtomicI64,
    /// Requests without an authenticated user, by code class (index 0 = 1xx ... 4 = 5xx).
    anonymous: [AtomicU64; 5],
    /// Requests refused by max-in-flight: read-only, mutating.
    dropped: [AtomicU64; 2],
    /// Requests counted against max-in-flight now: read-only, mutating.
    inflight: [AtomicI64; 2],
}

/// Decrements an in-flight gauge when dropped.
pub struct InflightGuard<'a>(&'a AtomicI64);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Records a request that had no authenticated user: one counter per code class.
    pub fn observe_anonymous(&self, code: u16) {
        let class = usize::from(code / 100).clamp(1, 5) - 1;
        self.anonymous[class].fetch_add(1, Ordering::Relaxed);
    }

    /// A request refused with 429 by max-in-flight.
    pub fn dropped(&self, mutating: bool) {
        self.dropped[usize::from(mutating)].fetch_add(1, Ordering::Relaxed);
    }

    /// A request now counted against max-in-flight, until the guard is dropped.
    pub fn inflight(&self, mutating: bool) -> InflightGuard<'_> {
        let g = &self.inflight[usize::from(mutating)];
        g.fetch_add(1, Ordering::Relaxed);
        InflightGuard(g)
    }

    /// Records one finished request of an authenticated user.
    pub fn observe(&self, labels: &RequestLabels, code: u16, elapsed: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((labels.clone(), code)).or_default() += 1;
        }
        if labels.verb == "watch" {
            return;
        }
        if let Ok(mut m) = self.latencies.lock() {
            let h = m.entry((labels.verb, labels.resource.clone())).or_default();
            if h.counts.is_empty() {
                h.counts = vec![0; BUCKETS.len()];
            }
            let s = elapsed.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += s;
            h.count += 1;
        }
    }

    /// A watch began.
    pub fn watch_started(&self) {
        self.watches.fetch_add(1, Ordering::Relaxed);
    }

    /// A watch ended.
    pub fn watch_ended(&self) {
        self.watches.fetch_sub(1, Ordering::Relaxed);
    }

    /// Open watches.
    pub fn watches(&self) -> i64 {
        self.watches.load(Ordering::Relaxed)
    }

    /// Renders the request metrics as Prometheus text.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, group, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for (
                (
                    RequestLabels {
                        verb,
                        group,
                        resource,
                    },
                    code,
                ),
                n,
            ) in m.iter()
            {
                let _ = writeln!(
                    out,
                    "apiserver_request_total{{verb=\"{}\",group=\"{group}\",resource=\"{resource}\",code=\"{code}\"}} {n}",
                    verb.to_uppercase()
                );
            }
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        if let Ok(m) = self.latencies.lock() {
            for ((verb, resource), h) in m.iter() {
                let verb = verb.to_uppercase();
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",resource=\"{resource}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",resource=\"{resource}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_sum{{verb=\"{verb}\",resource=\"{resource}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_count{{verb=\"{verb}\",resource=\"{resource}\"}} {}",
                    h.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP apiserver_longrunning_requests Gauge of all active long-running apiserver requests.\n# TYPE apiserver_longrunning_requests gauge\napiserver_longrunning_requests{{verb=\"WATCH\"}} {}",
            self.watches()
        );
        out.push_str("# HELP ferrokube_anonymous_requests_total Requests without an authenticated user (refused with 401, or anonymous on a public path), by response code class.\n# TYPE ferrokube_anonymous_requests_total counter\n");
        for (i, n) in self.anonymous.iter().enumerate() {
            let _ = writeln!(
                out,
                "ferrokube_anonymous_requests_total{{code_class=\"{}xx\"}} {}",
                i + 1,
                n.load(Ordering::Relaxed)
            );
        }
        let kinds = ["readOnly", "mutating"];
        out.push_str("# HELP apiserver_dropped_requests_total Number of requests dropped with 'Try again later' response.\n# TYPE apiserver_dropped_requests_total counter\n");
        for (kind, n) in kinds.iter().zip(&self.dropped) {
            let _ = writeln!(
                out,
                "apiserver_dropped_requests_total{{request_kind=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP apiserver_current_inflight_requests Requests currently counted against the max-in-flight limits, per request kind.\n# TYPE apiserver_current_inflight_requests gauge\n");
        for (kind, n) in kinds.iter().zip(&self.inflight) {
            let _ = writeln!(
                out,
                "apiserver_current_inflight_requests{{request_kind=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

/// Appends one gauge or counter line with its HELP/TYPE header.
pub fn write_metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(m: &Metrics) -> usize {
        let mut out = String::new();
        m.render(&mut out);
        out.lines().filter(|l| !l.starts_with('#')).count()
    }

    #[test]
    fn verbs_outside_the_fixed_set_become_other() {
        assert_eq!(clean_verb("list"), "list");
        assert_eq!(clean_verb("post"), "post");
        assert_eq!(clean_verb("PROPFIND"), "other");
        assert_eq!(clean_verb("x".repeat(1000).as_str()), "other");
    }

    #[test]
    fn anonymous_requests_never_add_series() {
        let m = Metrics::default();
        let before = lines(&m);
        for code in [200u16, 401, 403, 404, 429, 500, 599, 0, 999] {
            m.observe_anonymous(code);
        }
        assert_eq!(lines(&m), before);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("ferrokube_anonymous_requests_total{code_class=\"4xx\"} 4"),
            "{out}"
        );
    }

    #[test]
    fn in_flight_gauges_follow_their_guards() {
        let m = Metrics::default();
        {
            let _a = m.inflight(true);
            let _b = m.inflight(true);
            assert_eq!(m.inflight[1].load(Ordering::Relaxed), 2);
        }
        assert_eq!(m.inflight[1].load(Ordering::Relaxed), 0);
        m.dropped(false);
        assert_eq!(m.dropped[0].load(Ordering::Relaxed), 1);
    }
}
