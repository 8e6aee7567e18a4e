//! autoscaling/v1 ↔ autoscaling/v2 HorizontalPodAutoscaler, after upstream's
//! `pkg/apis/autoscaling/v1/conversion.go`. HPAs are stored as v2.
//!
//! v1 has only `targetCPUUtilizationPercentage` / `currentCPUUtilizationPercentage`; everything
//! else a v2 object says survives a v1 read-modify-write in annotations holding v1-shaped JSON:
//! `autoscaling.alpha.kubernetes.io/metrics` (spec metrics other than a CPU utilization target),
//! `.../current-metrics` (all status metrics), `.../conditions` (status conditions) and
//! `.../behavior` (spec.behavior — upstream's v1 conversion drops it; we keep it so a v1 client's
//! update does not erase it). A v2 object never carries these annotations. A v1 object without
//! any metric gets upstream's explicit default: CPU utilization 80%.

use serde_json::{Map, Value, json};

use super::ConversionError;

/// Spec metrics other than a CPU utilization target, as v1 `MetricSpec` JSON.
pub const METRIC_SPECS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// Status metrics, as v1 `MetricStatus` JSON.
pub const METRIC_STATUSES_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// Status conditions.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// `spec.behavior`.
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// Upstream's `DefaultCPUUtilization`.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

type Obj = Map<String, Value>;

fn take_obj(map: &mut Obj, key: &str) -> Obj {
    match map.remove(key) {
        Some(Value::Object(m)) => m,
        _ => Obj::new(),
    }
}

fn put(map: &mut Obj, key: &str, v: Option<Value>) {
    if let Some(v) = v.filter(|v| !v.is_null()) {
        map.insert(key.to_string(), v);
    }
}

fn is_cpu_resource(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource")
        && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
}

// ---- metric specs ----

fn spec_to_v1(m: &Value) -> Value {
    let mut m = m.as_object().cloned().unwrap_or_default();
    let mut out = Obj::new();
    put(&mut out, "type", m.remove("type"));
    for key in ["resource", "containerResource"] {
        if let Some(Value::Object(mut r)) = m.remove(key) {
            let mut target = take_obj(&mut r, "target");
            let mut o = Obj::new();
            put(&mut o, "name", r.remove("name"));
            put(
                &mut o,
                "targetAverageUtilization",
                target.remove("averageUtilization"),
            );
            put(&mut o, "targetAverageValue", target.remove("averageValue"));
            put(&mut o, "container", r.remove("container"));
            out.insert(key.into(), Value::Object(o));
        }
    }
    if let Some(Value::Object(mut p)) = m.remove("pods") {
        let mut metric = take_obj(&mut p, "metric");
        let mut target = take_obj(&mut p, "target");
        let mut o = Obj::new();
        put(&mut o, "metricName", metric.remove("name"));
        put(&mut o, "targetAverageValue", target.remove("averageValue"));
        put(&mut o, "selector", metric.remove("selector"));
        out.insert("pods".into(), Value::Object(o));
    }
    if let Some(Value::Object(mut ob)) = m.remove("object") {
        let mut metric = take_obj(&mut ob, "metric");
        let mut target = take_obj(&mut ob, "target");
        let mut o = Obj::new();
        put(&mut o, "target", ob.remove("describedObject"));
        put(&mut o, "metricName", metric.remove("name"));
        put(&mut o, "targetValue", target.remove("value"));
        put(&mut o, "selector", metric.remove("selector"));
        put(&mut o, "averageValue", target.remove("averageValue"));
        out.insert("object".into(), Value::Object(o));
    }
    if let Some(Value::Object(mut e)) = m.remove("external") {
        let mut metric = take_obj(&mut e, "metric");
        let mut target = take_obj(&mut e, "target");
        let mut o = Obj::new();
        put(&mut o, "metricName", metric.remove("name"));
        put(&mut o, "metricSelector", metric.remove("selector"));
        put(&mut o, "targetValue", target.remove("value"));
        put(&mut o, "targetAverageValue", target.remove("averageValue"));
        out.insert("external".into(), Value::Object(o));
    }
    Value::Object(out)
}

fn spec_to_v2(m: &Value) -> Value {
    let mut m = m.as_object().cloned().unwrap_or_default();
    let mut out = Obj::new();
    put(&mut out, "type", m.remove("type"));
    for key in ["resource", "containerResource"] {
        if let Some(Value::Object(mut r)) = m.remove(key) {
            let util = r.remove("targetAverageUtilization");
            let ty = if util.is_some() {
                "Utilization"
            } else {
                "AverageValue"
            };
            let mut target = Obj::new();
            target.insert("type".into(), json!(ty));
            put(&mut target, "averageUtilization", util);
            put(&mut target, "averageValue", r.remove("targetAverageValue"));
            let mut o = Obj::new();
            put(&mut o, "name", r.remove("name"));
            put(&mut o, "container", r.remove("container"));
            o.insert("target".into(), Value::Object(target));
            out.insert(key.into(), Value::Object(o));
        }
    }
    if let Some(Value::Object(mut p)) = m.remove("pods") {
        let mut metric = Obj::new();
        put(&mut metric, "name", p.remove("metricName"));
        put(&mut metric, "selector", p.remove("selector"));
        let mut target = Obj::new();
        target.insert("type".into(), json!("AverageValue"));
        put(&mut target, "averageValue", p.remove("targetAverageValue"));
        out.insert("pods".into(), json!({"metric": metric, "target": target}));
    }
    if let Some(Value::Object(mut ob)) = m.remove("object") {
        let avg = ob.remove("averageValue");
        let ty = if avg.is_some() {
            "AverageValue"
        } else {
            "Value"
        };
        let mut target = Obj::new();
        target.insert("type".into(), json!(ty));
        put(&mut target, "value", ob.remove("targetValue"));
        put(&mut target, "averageValue", avg);
        let mut metric = Obj::new();
        put(&mut metric, "name", ob.remove("metricName"));
        put(&mut metric, "selector", ob.remove("selector"));
        let mut o = Obj::new();
        put(&mut o, "describedObject", ob.remove("target"));
        o.insert("target".into(), Value::Object(target));
        o.insert("metric".into(), Value::Object(metric));
        out.insert("object".into(), Value::Object(o));
    }
    if let Some(Value::Object(mut e)) = m.remove("external") {
        let value = e.remove("targetValue");
        let ty = if value.is_some() {
            "Value"
        } else {
            "AverageValue"
        };
        let mut target = Obj::new();
        target.insert("type".into(), json!(ty));
        put(&mut target, "value", value);
        put(&mut target, "averageValue", e.remove("targetAverageValue"));
        let mut metric = Obj::new();
        put(&mut metric, "name", e.remove("metricName"));
        put(&mut metric, "selector", e.remove("metricSelector"));
        out.insert(
            "external".into(),
            json!({"metric": metric, "target": target}),
        );
    }
    Value::Object(out)
}

// ---- metric statuses ----

fn status_to_v1(m: &Value) -> Value {
    let mut m = m.as_object().cloned().unwrap_or_default();
    let mut out = Obj::new();
    put(&mut out, "type", m.remove("type"));
    for key in ["resource", "containerResource"] {
        if let Some(Value::Object(mut r)) = m.remove(key) {
            let mut current = take_obj(&mut r, "current");
            let mut o = Obj::new();
            put(&mut o, "name", r.remove("name"));
            put(
                &mut o,
                "currentAverageUtilization",
                current.remove("averageUtilization"),
            );
            put(
                &mut o,
                "currentAverageValue",
                current.remove("averageValue"),
            );
            put(&mut o, "container", r.remove("container"));
            out.insert(key.into(), Value::Object(o));
        }
    }
    if let Some(Value::Object(mut p)) = m.remove("pods") {
        let mut metric = take_obj(&mut p, "metric");
        let mut current = take_obj(&mut p, "current");
        let mut o = Obj::new();
        put(&mut o, "metricName", metric.remove("name"));
        put(
            &mut o,
            "currentAverageValue",
            current.remove("averageValue"),
        );
        put(&mut o, "selector", metric.remove("selector"));
        out.insert("pods".into(), Value::Object(o));
    }
    if let Some(Value::Object(mut ob)) = m.remove("object") {
        let mut metric = take_obj(&mut ob, "metric");
        let mut current = take_obj(&mut ob, "current");
        let mut o = Obj::new();
        put(&mut o, "target", ob.remove("describedObject"));
        put(&mut o, "metricName", metric.remove("name"));
        put(&mut o, "currentValue", current.remove("value"));
        put(&mut o, "selector", metric.remove("selector"));
        put(&mut o, "averageValue", current.remove("averageValue"));
        out.insert("object".into(), Value::Object(o));
    }
    if let Some(Value::Object(mut e)) = m.remove("external") {
        let mut metric = take_obj(&mut e, "metric");
        let mut current = take_obj(&mut e, "current");
        let mut o = Obj::new();
        put(&mut o, "metricName", metric.remove("name"));
        put(&mut o, "metricSelector", metric.remove("selector"));
        put(&mut o, "currentValue", current.remove("value"));
        put(
            &mut o,
            "currentAverageValue",
            current.remove("averageValue"),
        );
        out.insert("external".into(), Value::Object(o));
    }
    Value::Object(out)
}

fn status_to_v2(m: &Value) -> Value {
    let mut m = m.as_object().cloned().unwrap_or_default();
    let mut out = Obj::new();
    put(&mut out, "type", m.remove("type"));
    for key in ["resource", "containerResource"] {
        if let Some(Value::Object(mut r)) = m.remove(key) {
            let mut current = Obj::new();
            put(
                &mut current,
                "averageUtilization",
                r.remove("currentAverageUtilization"),
            );
            put(
                &mut current,
                "averageValue",
                r.remove("currentAverageValue"),
            );
            let mut o = Obj::new();
            put(&mut o, "name", r.remove("name"));
            put(&mut o, "container", r.remove("container"));
            o.insert("current".into(), Value::Object(current));
            out.insert(key.into(), Value::Object(o));
        }
    }
    if let Some(Value::Object(mut p)) = m.remove("pods") {
        let mut metric = Obj::new();
        put(&mut metric, "name", p.remove("metricName"));
        put(&mut metric, "selector", p.remove("selector"));
        let mut current = Obj::new();
        put(
            &mut current,
            "averageValue",
            p.remove("currentAverageValue"),
        );
        out.insert("pods".into(), json!({"metric": metric, "current": current}));
    }
    if let Some(Value::Object(mut ob)) = m.remove("object") {
        let mut current = Obj::new();
        put(&mut current, "value", ob.remove("currentValue"));
        put(&mut current, "averageValue", ob.remove("averageValue"));
        let mut metric = Obj::new();
        put(&mut metric, "name", ob.remove("metricName"));
        put(&mut metric, "selector", ob.remove("selector"));
        let mut o = Obj::new();
        put(&mut o, "describedObject", ob.remove("target"));
        o.insert("current".into(), Value::Object(current));
        o.insert("metric".into(), Value::Object(metric));
        out.insert("object".into(), Value::Object(o));
    }
    if let Some(Value::Object(mut e)) = m.remove("external") {
        let mut current = Obj::new();
        put(&mut current, "value", e.remove("currentValue"));
        put(
            &mut current,
            "averageValue",
            e.remove("currentAverageValue"),
        );
        let mut metric = Obj::new();
        put(&mut metric, "name", e.remove("metricName"));
        put(&mut metric, "selector", e.remove("metricSelector"));
        out.insert(
            "external".into(),
            json!({"metric": metric, "current": current}),
        );
    }
    Value::Object(out)
}

// ---- objects ----

fn annotations(obj: &mut Value) -> Option<&mut Obj> {
    obj.as_object_mut()?
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()?
        .entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut()
}

fn drop_empty_annotations(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
        && meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        meta.remove("annotations");
    }
}

fn annotate(obj: &mut Value, key: &str, v: &Value) {
    if let Some(a) = annotations(obj) {
        a.insert(key.to_string(), Value::String(v.to_string()));
    }
}

fn take_annotation(obj: &mut Value, key: &'static str) -> Result<Option<Value>, ConversionError> {
    let raw = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.remove(key));
    match raw {
        Some(Value::String(s)) => {
            serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| ConversionError::BadAnnotation {
                    annotation: key,
                    message: e.to_string(),
                })
        }
        _ => Ok(None),
    }
}

/// v2 → v1 (fields only; the caller sets `apiVersion`).
pub fn v2_to_v1(obj: &mut Value) -> Result<(), ConversionError> {
    let Some(map) = obj.as_object_mut() else {
        return Ok(());
    };
    let mut spec = take_obj(map, "spec");
    let mut status = take_obj(map, "status");
    let had_status = map.contains_key("status") || !status.is_empty();

    let metrics = match spec.remove("metrics") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let behavior = spec.remove("behavior");
    let mut v1_spec = Obj::new();
    put(
        &mut v1_spec,
        "scaleTargetRef",
        spec.remove("scaleTargetRef"),
    );
    put(&mut v1_spec, "minReplicas", spec.remove("minReplicas"));
    put(&mut v1_spec, "maxReplicas", spec.remove("maxReplicas"));
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_resource(m))
        && let Some(u) = cpu.pointer("/resource/target/averageUtilization")
    {
        v1_spec.insert("targetCPUUtilizationPercentage".into(), u.clone());
    }
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| {
            !(is_cpu_resource(m)
                && m.pointer("/resource/target/averageUtilization")
                    .is_some_and(|v| !v.is_null()))
        })
        .map(spec_to_v1)
        .collect();

    let current = match status.remove("currentMetrics") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let conditions = match status.remove("conditions") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let mut v1_status = Obj::new();
    for k in [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ] {
        put(&mut v1_status, k, status.remove(k));
    }
    for m in &current {
        if is_cpu_resource(m)
            && let Some(u) = m.pointer("/resource/current/averageUtilization")
            && !u.is_null()
        {
            v1_status.insert("currentCPUUtilizationPercentage".into(), u.clone());
        }
    }
    map.insert("spec".into(), Value::Object(v1_spec));
    if had_status {
        map.insert("status".into(), Value::Object(v1_status));
    }

    if !others.is_empty() {
        annotate(obj, METRIC_SPECS_ANNOTATION, &Value::Array(others));
    }
    if !current.is_empty() {
        let v1: Vec<Value> = current.iter().map(status_to_v1).collect();
        annotate(obj, METRIC_STATUSES_ANNOTATION, &Value::Array(v1));
    }
    if !conditions.is_empty() {
        annotate(obj, CONDITIONS_ANNOTATION, &Value::Array(conditions));
    }
    if let Some(b) = behavior.filter(|b| !b.is_null()) {
        annotate(obj, BEHAVIOR_ANNOTATION, &b);
    }
    drop_empty_annotations(obj);
    Ok(())
}

/// v1 → v2 (fields only; the caller sets `apiVersion`).
pub fn v1_to_v2(obj: &mut Value) -> Result<(), ConversionError> {
    let other_metrics = take_annotation(obj, METRIC_SPECS_ANNOTATION)?;
    let current_metrics = take_annotation(obj, METRIC_STATUSES_ANNOTATION)?;
    let conditions = take_annotation(obj, CONDITIONS_ANNOTATION)?;
    let behavior = take_annotation(obj, BEHAVIOR_ANNOTATION)?;
    drop_empty_annotations(obj);
    let Some(map) = obj.as_object_mut() else {
        return Ok(());
    };
    let mut spec = take_obj(map, "spec");
    let had_status = map.contains_key("status");
    let mut status = take_obj(map, "status");

    let mut v2_spec = Obj::new();
    put(
        &mut v2_spec,
        "scaleTargetRef",
        spec.remove("scaleTargetRef"),
    );
    put(&mut v2_spec, "minReplicas", spec.remove("minReplicas"));
    put(&mut v2_spec, "maxReplicas", spec.remove("maxReplicas"));
    let mut metrics: Vec<Value> = match other_metrics {
        Some(Value::Array(a)) => a.iter().map(spec_to_v2).collect(),
        _ => Vec::new(),
    };
    if let Some(u) = spec
        .remove("targetCPUUtilizationPercentage")
        .filter(|v| !v.is_null())
    {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": u}}}));
    }
    if metrics.is_empty() {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}));
    }
    v2_spec.insert("metrics".into(), Value::Array(metrics));
    put(&mut v2_spec, "behavior", behavior);

    let mut v2_status = Obj::new();
    for k in [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ] {
        put(&mut v2_status, k, status.remove(k));
    }
    let cpu = status
        .remove("currentCPUUtilizationPercentage")
        .filter(|v| !v.is_null());
    match current_metrics {
        // The annotation has more information than the CPU figure: it wins.
        Some(Value::Array(a)) => {
            v2_status.insert(
                "currentMetrics".into(),
                Value::Array(a.iter().map(status_to_v2).collect()),
            );
        }
        _ => {
            if let Some(u) = cpu {
                v2_status.insert(
                    "currentMetrics".into(),
                    json!([{"type": "Resource", "resource": {"name": "cpu",
                        "current": {"averageUtilization": u}}}]),
                );
            }
        }
    }
    put(&mut v2_status, "conditions", conditions);
    map.insert("spec".into(), Value::Object(v2_spec));
    if had_status || !v2_status.is_empty() {
        map.insert("status".into(), Value::Object(v2_status));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::convert;
    use super::*;

    fn v2_full() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory",
                        "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "rps"},
                        "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "External", "external": {"metric": {"name": "queue"},
                        "target": {"type": "Value", "value": "30"}}},
                    {"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 60}}}
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}
            },
            "status": {
                "currentReplicas": 3, "desiredReplicas": 3,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": 42, "averageValue": "210m"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True",
                    "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "ReadyForNewScale"}]
            }
        })
    }

    #[test]
    fn v2_to_v1_keeps_cpu_fields_and_annotates_the_rest() {
        let mut v1 = v2_full();
        convert(&mut v1, "autoscaling/v1").unwrap();
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["spec"]["minReplicas"], 2);
        assert!(v1["spec"].get("metrics").is_none());
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 42);
        assert_eq!(v1["status"]["currentReplicas"], 3);
        let a = &v1["metadata"]["annotations"];
        assert_eq!(a["team"], "a");
        let others: Value =
            serde_json::from_str(a[METRIC_SPECS_ANNOTATION].as_str().unwrap()).unwrap();
        // v1-shaped, as upstream's autoscalingv1.MetricSpec.
        assert_eq!(
            others,
            json!([
                {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "500Mi"}},
                {"type": "Pods", "pods": {"metricName": "rps", "targetAverageValue": "10"}},
                {"type": "External", "external": {"metricName": "queue", "targetValue": "30"}}
            ])
        );
        let current: Value =
            serde_json::from_str(a[METRIC_STATUSES_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(
            current,
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "currentAverageUtilization": 42, "currentAverageValue": "210m"}}])
        );
        assert!(a.get(CONDITIONS_ANNOTATION).is_some());
        assert!(a.get(BEHAVIOR_ANNOTATION).is_some());
    }

    #[test]
    fn v2_round_trips_through_v1() {
        let original = v2_full();
        let mut obj = original.clone();
        convert(&mut obj, "autoscaling/v1").unwrap();
        convert(&mut obj, "autoscaling/v2").unwrap();
        // The CPU target moves to the end of the list, as upstream's conversion appends it.
        let mut want = original;
        assert_eq!(obj["spec"]["metrics"], want["spec"]["metrics"]);
        assert_eq!(obj["spec"]["behavior"], want["spec"]["behavior"]);
        assert_eq!(obj["status"], want["status"]);
        want["metadata"]["annotations"] = json!({"team": "a"});
        assert_eq!(obj["metadata"], want["metadata"]);
    }

    #[test]
    fn plain_v1_defaults_to_80_percent_cpu_and_back() {
        let mut obj = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5}
        });
        convert(&mut obj, "autoscaling/v2").unwrap();
        assert_eq!(
            obj["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}])
        );
        assert!(obj.get("status").is_none());
        assert!(obj["metadata"].get("annotations").is_none());
        convert(&mut obj, "autoscaling/v1").unwrap();
        assert_eq!(obj["spec"]["targetCPUUtilizationPercentage"], 80);
        assert!(obj["metadata"].get("annotations").is_none(), "{obj}");
    }

    #[test]
    fn bad_annotation_is_an_error() {
        let mut obj = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "annotations": {METRIC_SPECS_ANNOTATION: "{not json"}},
            "spec": {"maxReplicas": 5}
        });
        assert!(matches!(
            convert(&mut obj, "autoscaling/v2"),
            Err(ConversionError::BadAnnotation { .. })
        ));
    }
}
