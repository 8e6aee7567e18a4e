//! upstream `ReplicaCalculator` for resource metrics: the usage ratio over ready pods with
//! metrics, with upstream's handling of missing and unready pods and its 10 % tolerance.

/// upstream `--horizontal-pod-autoscaler-tolerance`.
pub const TOLERANCE: f64 = 0.1;

/// One pod the target selects (deleted and failed pods are left out by the caller).
#[derive(Debug, Clone, Copy)]
pub struct PodSample {
    /// Ready condition true.
    pub ready: bool,
    /// Phase Pending.
    pub pending: bool,
    /// Usage in milli-units, None when the metrics API has none for the pod.
    pub usage: Option<i128>,
    /// Sum of the requests (milli-units) of the containers considered.
    pub request: i128,
}

/// A resource metric target.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// `averageUtilization` in percent of requests.
    Utilization(i32),
    /// `averageValue` in milli-units.
    AverageValue(i128),
}

/// The computed proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Proposed replica count.
    pub replicas: i32,
    /// Current average utilization (percent), for Utilization targets.
    pub utilization: Option<i32>,
    /// Current average usage per pod (milli-units).
    pub average_usage: i128,
}

/// Why no proposal could be made (upstream's messages).
#[derive(Debug, thiserror::Error, PartialEq)]
#[allow(clippy::enum_variant_names)]
pub enum CalcError {
    /// The selector matched nothing.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// No ready pod had metrics.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetrics,
    /// Requests sum to zero.
    #[error("no metrics returned matched known pods")]
    NoRequests,
}

fn ratio(values: &[(i128, i128)], target: Target) -> Result<(f64, i128, Option<i32>), CalcError> {
    let n = values.len() as f64;
    let usage: i128 = values.iter().map(|(u, _)| *u).sum();
    let avg = if values.is_empty() {
        0
    } else {
        usage / values.len() as i128
    };
    match target {
        Target::Utilization(t) => {
            let requests: i128 = values.iter().map(|(_, r)| *r).sum();
            if requests == 0 {
                return Err(CalcError::NoRequests);
            }
            let util = usage * 100 / requests;
            let util_i = i32::try_from(util).unwrap_or(i32::MAX);
            Ok((util as f64 / f64::from(t.max(1)), avg, Some(util_i)))
        }
        Target::AverageValue(t) => Ok((usage as f64 / n / (t.max(1) as f64), avg, None)),
    }
}

/// upstream `GetResourceReplicas` / `GetRawResourceReplicas`.
pub fn replicas_for(
    current: i32,
    pods: &[PodSample],
    target: Target,
) -> Result<Outcome, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let mut ready = Vec::new();
    let mut unready = Vec::new();
    let mut missing = Vec::new();
    for p in pods {
        match p.usage {
            _ if p.pending => unready.push(p.request),
            None => missing.push(p.request),
            // upstream counts CPU of not-yet-ready pods as unready (initialisation period).
            Some(_) if !p.ready && matches!(target, Target::Utilization(_)) => {
                unready.push(p.request)
            }
            Some(u) => ready.push((u, p.request)),
        }
    }
    if ready.is_empty() {
        return Err(CalcError::NoMetrics);
    }
    let (r, avg, util) = ratio(&ready, target)?;
    let outcome = |replicas| Outcome {
        replicas,
        utilization: util,
        average_usage: avg,
    };
    let scale_up_with_unready = !unready.is_empty() && r > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if (1.0 - r).abs() <= TOLERANCE {
            return Ok(outcome(current));
        }
        return Ok(outcome(ceil(r * ready.len() as f64)));
    }
    let mut all = ready.clone();
    for req in &missing {
        let fill = if r < 1.0 {
            match target {
                Target::Utilization(t) => req * i128::from(t.max(100)) / 100,
                Target::AverageValue(t) => t,
            }
        } else {
            0
        };
        all.push((fill, *req));
    }
    if scale_up_with_unready {
        all.extend(unready.iter().map(|req| (0, *req)));
    }
    let (nr, _, _) = ratio(&all, target)?;
    if (1.0 - nr).abs() <= TOLERANCE || (r < 1.0 && nr > 1.0) || (r > 1.0 && nr < 1.0) {
        return Ok(outcome(current));
    }
    let n = ceil(nr * all.len() as f64);
    if (nr < 1.0 && n > current) || (nr > 1.0 && n < current) {
        return Ok(outcome(current));
    }
    Ok(outcome(n))
}

fn ceil(v: f64) -> i32 {
    let c = v.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        c as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(usage: Option<i128>, request: i128) -> PodSample {
        PodSample {
            ready: true,
            pending: false,
            usage,
            request,
        }
    }

    #[test]
    fn utilization_scales_up_and_down() {
        // 2 pods at 100% of a 50% target → 4.
        let p = [pod(Some(200), 200), pod(Some(200), 200)];
        let o = replicas_for(2, &p, Target::Utilization(50)).expect("ok");
        assert_eq!((o.replicas, o.utilization), (4, Some(100)));
        // 4 pods at 10% of a 50% target → 1.
        let p = [pod(Some(20), 200); 4];
        assert_eq!(
            replicas_for(4, &p, Target::Utilization(50)).map(|o| o.replicas),
            Ok(1)
        );
        // Within tolerance: unchanged.
        let p = [pod(Some(105), 200); 3];
        assert_eq!(
            replicas_for(3, &p, Target::Utilization(50)).map(|o| o.replicas),
            Ok(3)
        );
    }

    #[test]
    fn missing_metrics_damp_the_change() {
        // Scale-down with a missing pod: it counts as 100%, so the ratio flips → no change.
        let p = [pod(Some(80), 200), pod(None, 200)];
        assert_eq!(
            replicas_for(2, &p, Target::Utilization(50)).map(|o| o.replicas),
            Ok(2)
        );
        // Scale-up with a missing pod: it counts as 0.
        let p = [pod(Some(400), 200), pod(None, 200)];
        assert_eq!(
            replicas_for(2, &p, Target::Utilization(50)).map(|o| o.replicas),
            Ok(4)
        );
    }

    #[test]
    fn errors_as_upstream() {
        assert_eq!(
            replicas_for(1, &[], Target::Utilization(50)),
            Err(CalcError::NoPods)
        );
        assert_eq!(
            replicas_for(1, &[pod(None, 100)], Target::Utilization(50)),
            Err(CalcError::NoMetrics)
        );
    }

    #[test]
    fn average_value() {
        let p = [pod(Some(300), 0), pod(Some(300), 0)];
        let o = replicas_for(2, &p, Target::AverageValue(100)).expect("ok");
        assert_eq!((o.replicas, o.average_usage), (6, 300));
    }
}
