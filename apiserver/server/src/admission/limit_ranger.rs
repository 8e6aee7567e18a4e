//! LimitRanger (upstream `plugin/pkg/admission/limitranger`): the LimitRanges of a namespace
//! default a new pod's container requests and limits (`defaultRequest`, `default`, recorded in
//! the `kubernetes.io/limit-ranger` annotation) and bound them (`min`, `max`,
//! `maxLimitRequestRatio` per Container and per Pod); PersistentVolumeClaims are bounded by
//! `type: PersistentVolumeClaim` items. Pod updates are not checked (containers' resources
//! cannot change in place here).

use std::collections::BTreeMap;

use ferrokube_machinery::quota::{format_milli, is_binary, milli_of};
use serde_json::{Map, Value, json};

use super::api::{ApiHandle, LIMIT_RANGES};
use super::pod::{containers_mut, s};
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The LimitRanger plugin.
pub struct LimitRanger {
    pub api: ApiHandle,
}

/// The `limits[]` items of every LimitRange in the namespace.
async fn items(api: &ApiHandle, ns: &str) -> ApiResult<Vec<Value>> {
    let ranges = api.list(LIMIT_RANGES, ns).await?;
    Ok(ranges
        .into_iter()
        .flat_map(|r| {
            r.pointer("/spec/limits")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .collect())
}

/// upstream `mergeContainerResources`: fills missing limits, then requests; returns the
/// annotation parts.
fn merge(
    c: &mut Value,
    defaults: &Map<String, Value>,
    requests: &Map<String, Value>,
    prefix: &str,
    notes: &mut Vec<String>,
) {
    let name = s(c, "/name").to_string();
    let Some(cm) = c.as_object_mut() else {
        return;
    };
    let res = cm.entry("resources").or_insert_with(|| json!({}));
    let Some(res) = res.as_object_mut() else {
        return;
    };
    let mut set = |kind: &str, from: &Map<String, Value>| -> Vec<String> {
        let mut names = Vec::new();
        if from.is_empty() {
            return names;
        }
        let list = res.entry(kind).or_insert_with(|| json!({}));
        if let Some(list) = list.as_object_mut() {
            for (k, v) in from {
                if !list.contains_key(k) {
                    list.insert(k.clone(), v.clone());
                    names.push(k.clone());
                }
            }
        }
        names.sort();
        names
    };
    let limits = set("limits", defaults);
    let reqs = set("requests", requests);
    if !reqs.is_empty() {
        notes.push(format!("{} request for {prefix} {name}", reqs.join(", ")));
    }
    if !limits.is_empty() {
        notes.push(format!("{} limit for {prefix} {name}", limits.join(", ")));
    }
}

fn quantities(v: &Value, at: &str) -> BTreeMap<String, (i128, String)> {
    let mut out = BTreeMap::new();
    if let Some(m) = v.pointer(at).and_then(Value::as_object) {
        for (k, q) in m {
            if let Some(x) = milli_of(q) {
                let text = q
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| q.to_string());
                out.insert(k.clone(), (x, text));
            }
        }
    }
    out
}

/// upstream `minConstraint` / `maxConstraint` / `limitRequestRatioConstraint` for one item
/// against a request/limit set.
fn check(
    item: &Value,
    kind: &str,
    req: &BTreeMap<String, (i128, String)>,
    lim: &BTreeMap<String, (i128, String)>,
    errs: &mut Vec<String>,
) {
    let show = |(v, text): &(i128, String)| {
        if text.is_empty() {
            format_milli(*v, false)
        } else {
            text.clone()
        }
    };
    for (res, (min, min_text)) in quantities(item, "/min") {
        match req.get(&res) {
            None => errs.push(format!(
                "minimum {res} usage per {kind} is {min_text}.  No request is specified"
            )),
            Some(r) if r.0 < min => errs.push(format!(
                "minimum {res} usage per {kind} is {min_text}, but request is {}",
                show(r)
            )),
            _ => {
                if let Some(l) = lim.get(&res).filter(|l| l.0 < min) {
                    errs.push(format!(
                        "minimum {res} usage per {kind} is {min_text}, but limit is {}",
                        show(l)
                    ));
                }
            }
        }
    }
    for (res, (max, max_text)) in quantities(item, "/max") {
        match lim.get(&res) {
            None => errs.push(format!(
                "maximum {res} usage per {kind} is {max_text}.  No limit is specified"
            )),
            Some(l) if l.0 > max => errs.push(format!(
                "maximum {res} usage per {kind} is {max_text}, but limit is {}",
                show(l)
            )),
            _ => {
                if let Some(r) = req.get(&res).filter(|r| r.0 > max) {
                    errs.push(format!(
                        "maximum {res} usage per {kind} is {max_text}, but request is {}",
                        show(r)
                    ));
                }
            }
        }
    }
    for (res, (ratio, ratio_text)) in quantities(item, "/maxLimitRequestRatio") {
        let (Some(l), Some(r)) = (lim.get(&res), req.get(&res)) else {
            continue;
        };
        if r.0 > 0 && l.0 * 1000 > ratio * r.0 {
            errs.push(format!(
                "{res} max limit to request ratio per {kind} is {ratio_text}, but provided ratio is {:.6}",
                l.0 as f64 / r.0 as f64
            ));
        }
    }
}

/// Sums of a resource kind over the pod's containers (max with each init container).
fn pod_totals(spec: &Value, kind: &str) -> BTreeMap<String, (i128, String)> {
    let mut sum: BTreeMap<String, (i128, bool)> = BTreeMap::new();
    for c in spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (k, (v, t)) in quantities(c, &format!("/resources/{kind}")) {
            let e = sum.entry(k).or_insert((0, is_binary(&t)));
            e.0 += v;
        }
    }
    for c in spec
        .get("initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (k, (v, t)) in quantities(c, &format!("/resources/{kind}")) {
            let e = sum.entry(k).or_insert((0, is_binary(&t)));
            e.0 = e.0.max(v);
        }
    }
    sum.into_iter()
        .map(|(k, (v, b))| (k, (v, format_milli(v, b))))
        .collect()
}

#[async_trait::async_trait]
impl AdmissionPlugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        if a.operation != Operation::Create || !a.subresource.is_empty() || !a.is("", "pods") {
            return Ok(());
        }
        let items = items(&self.api, a.namespace).await?;
        let mut defaults = Map::new();
        let mut requests = Map::new();
        for it in items.iter().filter(|i| s(i, "/type") == "Container") {
            if let Some(m) = it.get("default").and_then(Value::as_object) {
                defaults.extend(m.clone());
            }
            if let Some(m) = it.get("defaultRequest").and_then(Value::as_object) {
                requests.extend(m.clone());
            }
        }
        if defaults.is_empty() && requests.is_empty() {
            return Ok(());
        }
        let Some(spec) = obj.get_mut("spec") else {
            return Ok(());
        };
        let mut notes = Vec::new();
        for c in containers_mut(spec, "containers") {
            merge(c, &defaults, &requests, "container", &mut notes);
        }
        for c in containers_mut(spec, "initContainers") {
            merge(c, &defaults, &requests, "init container", &mut notes);
        }
        if !notes.is_empty()
            && let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut)
        {
            let ann = m.entry("annotations").or_insert_with(|| json!({}));
            if let Some(ann) = ann.as_object_mut() {
                ann.insert(
                    ANNOTATION.into(),
                    json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
                );
            }
        }
        Ok(())
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        _old: Option<&Value>,
    ) -> ApiResult<()> {
        if a.operation != Operation::Create || !a.subresource.is_empty() {
            return Ok(());
        }
        let pvc = a.is("", "persistentvolumeclaims");
        if !pvc && !a.is("", "pods") {
            return Ok(());
        }
        let items = items(&self.api, a.namespace).await?;
        let mut errs = Vec::new();
        for it in &items {
            match (s(it, "/type"), pvc) {
                ("PersistentVolumeClaim", true) => {
                    let req = quantities(obj, "/spec/resources/requests");
                    let lim = quantities(obj, "/spec/resources/limits");
                    check(it, "PersistentVolumeClaim", &req, &lim, &mut errs);
                }
                ("Container", false) => {
                    let spec = obj.get("spec").unwrap_or(&Value::Null);
                    for field in ["initContainers", "containers"] {
                        for c in spec
                            .get(field)
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            let req = quantities(c, "/resources/requests");
                            let lim = quantities(c, "/resources/limits");
                            check(it, "Container", &req, &lim, &mut errs);
                        }
                    }
                }
                ("Pod", false) => {
                    let spec = obj.get("spec").unwrap_or(&Value::Null);
                    let req = pod_totals(spec, "requests");
                    let lim = pod_totals(spec, "limits");
                    check(it, "Pod", &req, &lim, &mut errs);
                }
                _ => {}
            }
        }
        match errs.len() {
            0 => Ok(()),
            1 => Err(a.forbidden(&errs[0])),
            _ => Err(a.forbidden(&format!("[{}]", errs.join(", ")))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_reported_as_upstream() {
        let item = json!({"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"}});
        let req = quantities(&json!({"cpu": "500m", "memory": "32Mi"}), "");
        let lim = quantities(&json!({"cpu": "2"}), "");
        let mut errs = Vec::new();
        check(&item, "Container", &req, &lim, &mut errs);
        assert_eq!(
            errs,
            vec![
                "minimum memory usage per Container is 64Mi, but request is 32Mi",
                "maximum cpu usage per Container is 1, but limit is 2",
            ]
        );
    }
}
