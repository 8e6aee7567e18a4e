use serde_json::json;

use super::apply;

#[test]
fn pod_gets_upstream_defaults() {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [
            {"name": "a", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
             "readinessProbe": {"httpGet": {"port": 80}},
             "resources": {"limits": {"cpu": "1"}}},
            {"name": "b", "image": "busybox"}
        ], "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}]}
    });
    apply("", "v1", "Pod", &mut pod);
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["securityContext"], json!({}));
    let a = &spec["containers"][0];
    assert_eq!(a["imagePullPolicy"], "IfNotPresent");
    assert_eq!(a["ports"][0]["protocol"], "TCP");
    assert_eq!(a["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(a["terminationMessagePolicy"], "File");
    assert_eq!(a["resources"]["requests"]["cpu"], "1");
    assert_eq!(
        a["readinessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
               "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(spec["containers"][1]["imagePullPolicy"], "Always");
    assert_eq!(spec["containers"][1]["resources"], json!({}));
    assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
    assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 420);
}

#[test]
fn image_pull_policy_follows_the_tag() {
    use super::core::image_pull_policy as p;
    assert_eq!(p("nginx"), "Always");
    assert_eq!(p("nginx:latest"), "Always");
    assert_eq!(p("localhost:5000/nginx"), "Always");
    assert_eq!(p("localhost:5000/nginx:1"), "IfNotPresent");
    assert_eq!(p("nginx@sha256:abcd"), "IfNotPresent");
}

#[test]
fn templates_do_not_get_pod_only_defaults() {
    let mut d =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}});
    apply("apps", "v1", "Deployment", &mut d);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert!(
        d["spec"]["template"]["spec"]
            .get("enableServiceLinks")
            .is_none()
    );
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(d["status"], json!({}));
    // Recreate has no rollingUpdate.
    let mut r = json!({"spec": {"strategy": {"type": "Recreate"}}});
    apply("apps", "v1", "Deployment", &mut r);
    assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn workloads_and_services() {
    let mut ss =
        json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {}}]}});
    apply("apps", "v1", "StatefulSet", &mut ss);
    assert_eq!(
        ss["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 1}})
    );
    assert_eq!(ss["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        ss["spec"]["volumeClaimTemplates"][0]["status"]["phase"],
        "Pending"
    );
    let mut ds = json!({"spec": {}});
    apply("apps", "v1", "DaemonSet", &mut ds);
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"],
        json!({"maxUnavailable": 1, "maxSurge": 0})
    );
    let mut job = json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {}}}});
    apply("batch", "v1", "Job", &mut job);
    assert_eq!(job["spec"]["completions"], 1);
    assert_eq!(job["spec"]["backoffLimit"], 6);
    assert_eq!(job["spec"]["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(job["metadata"]["labels"], json!({"a": "b"}));
    let mut cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {}}}}}});
    apply("batch", "v1", "CronJob", &mut cj);
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    assert!(
        cj["spec"]["jobTemplate"]["spec"]
            .get("backoffLimit")
            .is_none()
    );
    let mut svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
    apply("", "v1", "Service", &mut svc);
    assert_eq!(
        svc["spec"]["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(svc["spec"]["allocateLoadBalancerNodePorts"], true);
    let mut hpa = json!({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
    apply("autoscaling", "v2", "HorizontalPodAutoscaler", &mut hpa);
    assert_eq!(
        hpa["spec"]["behavior"]["scaleUp"]["policies"][0]["type"],
        "Pods"
    );
    assert_eq!(
        hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        60
    );
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
}

#[test]
fn job_selector_is_generated_from_the_uid() {
    let mut job = json!({"metadata": {"name": "pi", "uid": "u-1"},
        "spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {}}}});
    super::batch::job_generate_selector(&mut job);
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"],
        json!({"app": "pi", "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
               "controller-uid": "u-1", "batch.kubernetes.io/controller-uid": "u-1"})
    );
    let mut manual =
        json!({"metadata": {"name": "m", "uid": "u"}, "spec": {"manualSelector": true}});
    super::batch::job_generate_selector(&mut manual);
    assert!(manual["spec"].get("selector").is_none());
}
