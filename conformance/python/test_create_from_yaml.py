"""kubernetes.utils.create_from_yaml with a multi-document manifest."""

from kubernetes import client, utils

from conftest import MANIFESTS


def test_create_from_multi_document_yaml(server):
    created = utils.create_from_yaml(server.api_client, str(MANIFESTS / "multi.yaml"), namespace="default")
    kinds = [obj.kind for group in created for obj in group]
    assert kinds == ["ConfigMap", "Deployment", "Service"]
    core = client.CoreV1Api(server.api_client)
    apps = client.AppsV1Api(server.api_client)
    assert core.read_namespaced_config_map("multi-config", "default").data == {"greeting": "hello"}
    assert apps.read_namespaced_deployment("multi-web", "default").spec.replicas == 1
    svc = core.read_namespaced_service("multi-web", "default")
    assert svc.spec.type == "ClusterIP"
    assert svc.spec.cluster_ip and svc.spec.cluster_ip != "None"
    assert [p.port for p in svc.spec.ports] == [80]
