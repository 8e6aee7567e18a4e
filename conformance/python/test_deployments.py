"""Deployments through the official Python client: create, list, patch, watch, delete."""

import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

NS = "default"


def deployment(name, replicas=1):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]),
            ),
        ),
    )


def wait_gone(apps, name):
    for _ in range(100):
        try:
            apps.read_namespaced_deployment(name, NS)
        except ApiException as e:
            if e.status == 404:
                return
            raise
        time.sleep(0.1)
    pytest.fail(f"deployment {name} still present 10 s after delete")


def test_deployment_lifecycle(apps, unique):
    name = f"pyweb-{unique}"
    created = apps.create_namespaced_deployment(NS, deployment(name))
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.revision_history_limit == 10
    assert created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"

    listed = apps.list_namespaced_deployment(NS, label_selector=f"app={name}")
    assert [d.metadata.name for d in listed.items] == [name]
    by_field = apps.list_namespaced_deployment(NS, field_selector=f"metadata.name={name}")
    assert [d.metadata.name for d in by_field.items] == [name]

    patched = apps.patch_namespaced_deployment(name, NS, {"spec": {"replicas": 3}})
    assert patched.spec.replicas == 3
    # Strategic merge on the containers list merges by name.
    patched = apps.patch_namespaced_deployment(
        name, NS, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}})
    containers = patched.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [("web", "nginx:1.28")]

    apps.delete_namespaced_deployment(name, NS)
    wait_gone(apps, name)


def test_deployment_watch(apps, unique):
    name = f"pywatch-{unique}"
    rv = apps.list_namespaced_deployment(NS).metadata.resource_version
    apps.create_namespaced_deployment(NS, deployment(name))
    apps.patch_namespaced_deployment(name, NS, {"metadata": {"labels": {"touched": "yes"}}})
    apps.delete_namespaced_deployment(name, NS)
    seen = []
    w = watch.Watch()
    for ev in w.stream(apps.list_namespaced_deployment, NS, field_selector=f"metadata.name={name}",
                       resource_version=rv, timeout_seconds=10):
        seen.append(ev["type"])
        if ev["type"] == "DELETED":
            w.stop()
    # Controllers may add MODIFIED events (status updates); the order of the three kinds holds.
    assert seen and seen[0] == "ADDED" and seen[-1] == "DELETED", seen
    assert "MODIFIED" in seen, seen
