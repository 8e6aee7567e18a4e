import json
"""ConfigMaps through the official Python client: CRUD, selectors, patches, watch."""

import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

NS = "default"


def cm(name, labels=None, data=None):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels or {}), data=data or {})


def test_create_get_list_delete(core, unique):
    created = core.create_namespaced_config_map(NS, cm(f"py-{unique}", {"suite": unique, "tier": "a"}, {"k": "v"}))
    assert created.metadata.uid and len(created.metadata.uid) == 36
    assert int(created.metadata.resource_version) > 0
    core.create_namespaced_config_map(NS, cm(f"py-{unique}-b", {"suite": unique, "tier": "b"}))
    core.create_namespaced_config_map(NS, cm(f"py-{unique}-c", {"suite": unique, "tier": "c"}))

    got = core.read_namespaced_config_map(f"py-{unique}", NS)
    assert got.data == {"k": "v"}
    assert got.metadata.uid == created.metadata.uid

    by_label = core.list_namespaced_config_map(NS, label_selector=f"suite={unique},tier in (a,b)")
    assert sorted(i.metadata.name for i in by_label.items) == [f"py-{unique}", f"py-{unique}-b"]
    by_field = core.list_namespaced_config_map(NS, field_selector=f"metadata.name=py-{unique}-c")
    assert [i.metadata.name for i in by_field.items] == [f"py-{unique}-c"]
    everywhere = core.list_config_map_for_all_namespaces(label_selector=f"suite={unique}")
    assert len(everywhere.items) == 3

    core.delete_namespaced_config_map(f"py-{unique}", NS)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map(f"py-{unique}", NS)
    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == f'configmaps "py-{unique}" not found'


def test_create_twice_is_conflict(core, unique):
    core.create_namespaced_config_map(NS, cm(f"dup-{unique}"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(NS, cm(f"dup-{unique}"))
    assert err.value.status == 409
    assert json.loads(err.value.body)["message"] == f'configmaps "dup-{unique}" already exists'


def test_strategic_merge_and_merge_patch(core, unique):
    name = f"patch-{unique}"
    core.create_namespaced_config_map(NS, cm(name, {"a": "1"}, {"keep": "x", "change": "old"}))
    # The client sends a dict body as a strategic merge patch.
    patched = core.patch_namespaced_config_map(name, NS, {"data": {"change": "new"}, "metadata": {"labels": {"b": "2"}}})
    assert patched.data == {"keep": "x", "change": "new"}
    assert patched.metadata.labels == {"a": "1", "b": "2"}
    # JSON merge patch: null deletes a key.
    api = core.api_client
    merged = api.call_api(
        f"/api/v1/namespaces/{NS}/configmaps/{name}", "PATCH",
        header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
        body={"data": {"keep": None, "added": "y"}}, response_type="V1ConfigMap",
        auth_settings=["BearerToken"], _return_http_data_only=True,
    )
    assert merged.data == {"change": "new", "added": "y"}
    assert core.read_namespaced_config_map(name, NS).data == {"change": "new", "added": "y"}


def test_watch_sees_added_modified_deleted(core, unique):
    label = f"watch={unique}"
    name = f"watched-{unique}"
    start_rv = core.list_namespaced_config_map(NS, label_selector=label).metadata.resource_version
    events = []

    def consume():
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, NS, label_selector=label,
                           resource_version=start_rv, timeout_seconds=20):
            events.append((ev["type"], ev["object"].metadata.name, dict(ev["object"].data or {})))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.5)
    core.create_namespaced_config_map(NS, cm(name, {"watch": unique}, {"v": "1"}))
    core.patch_namespaced_config_map(name, NS, {"data": {"v": "2"}})
    core.delete_namespaced_config_map(name, NS)
    t.join(timeout=30)
    assert not t.is_alive(), f"watch did not end; events so far: {events}"
    assert events == [
        ("ADDED", name, {"v": "1"}),
        ("MODIFIED", name, {"v": "2"}),
        ("DELETED", name, {"v": "2"}),
    ]
