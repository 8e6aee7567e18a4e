#!/usr/bin/env python3
"""CRD figures for issue 10, against a running server (KUBECONFIG):

- CR create/get throughput (schema of 50 properties and 5 CEL rules) vs ConfigMap, same run;
- time from creating a new CRD to it being served, in discovery and in OpenAPI v3;
- server RSS after installing N CRDs (pass the server pid).

Usage: crd_bench.py PID [N_OBJECTS] [N_CRDS]. Medians of several rounds are printed.
"""
import statistics
import sys
import threading
import time
import uuid

from kubernetes import client, config

PID = int(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 400
N_CRDS = int(sys.argv[3]) if len(sys.argv) > 3 else 200
THREADS = 8

config.load_kube_config()
api = client.ApiClient()
core = client.CoreV1Api(api)
ext = client.ApiextensionsV1Api(api)
custom = client.CustomObjectsApi(api)


def rss_mib():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def crd_body(plural, kind, group="bench.example.com", props=50, rules=5):
    properties = {f"p{i}": {"type": "integer", "minimum": 0, "maximum": 1000} for i in range(props)}
    validations = [{"rule": f"self.p{i} <= self.p{i + 1} + 1000", "message": f"rule {i}"} for i in range(rules)]
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "kind": kind},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {
                         "type": "object", "properties": properties,
                         "x-kubernetes-validations": validations}}}}}]},
    }


def wait_established(name):
    while True:
        c = ext.read_custom_resource_definition(name)
        for cond in (c.status.conditions or []) if c.status else []:
            if cond.type == "Established" and cond.status == "True":
                return
        time.sleep(0.002)


def run_parallel(fn, n):
    lock = threading.Lock()
    counter = [0]

    def worker():
        while True:
            with lock:
                i = counter[0]
                counter[0] += 1
            if i >= n:
                return
            fn(i)

    start = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return n / (time.perf_counter() - start)


def main():
    ext.create_custom_resource_definition(crd_body("things", "Thing"))
    wait_established("things.bench.example.com")
    time.sleep(0.5)
    spec = {f"p{i}": i for i in range(50)}
    rounds = {"cm create": [], "cr create": [], "cm get": [], "cr get": []}
    for r in range(3):
        tag = uuid.uuid4().hex[:6]
        rounds["cm create"].append(run_parallel(lambda i: core.create_namespaced_config_map(
            "default", {"metadata": {"name": f"cm-{tag}-{i}"}, "data": {f"k{j}": str(j) for j in range(50)}}), N))
        rounds["cr create"].append(run_parallel(lambda i: custom.create_namespaced_custom_object(
            "bench.example.com", "v1", "default", "things",
            {"apiVersion": "bench.example.com/v1", "kind": "Thing", "metadata": {"name": f"t-{tag}-{i}"}, "spec": spec}), N))
        rounds["cm get"].append(run_parallel(lambda i: core.read_namespaced_config_map(f"cm-{tag}-{i}", "default"), N))
        rounds["cr get"].append(run_parallel(lambda i: custom.get_namespaced_custom_object(
            "bench.example.com", "v1", "default", "things", f"t-{tag}-{i}"), N))
    med = {k: statistics.median(v) for k, v in rounds.items()}
    for k, v in med.items():
        print(f"{k:10s} {v:8.0f} /s (median of 3, {THREADS} threads, {N} objects)")
    print(f"CR/CM create ratio {med['cr create'] / med['cm create']:.2f}; get ratio {med['cr get'] / med['cm get']:.2f}")

    # Apply → served.
    lat = {"served": [], "discovery": [], "openapi": []}
    for r in range(5):
        plural = f"lat{r}s"
        t0 = time.perf_counter()
        ext.create_custom_resource_definition(crd_body(plural, f"Lat{r}"))
        while True:
            try:
                custom.list_namespaced_custom_object("bench.example.com", "v1", "default", plural)
                break
            except client.exceptions.ApiException:
                time.sleep(0.001)
        lat["served"].append(time.perf_counter() - t0)
        while True:
            d = api.call_api("/apis/bench.example.com/v1", "GET", response_type="object", _return_http_data_only=True)
            if any(x["name"] == plural for x in d["resources"]):
                break
            time.sleep(0.001)
        lat["discovery"].append(time.perf_counter() - t0)
        while True:
            d = api.call_api(f"/openapi/v3/apis/bench.example.com/v1", "GET", response_type="object", _return_http_data_only=True)
            if f"com.example.bench.v1.Lat{r}" in d["components"]["schemas"]:
                break
            time.sleep(0.001)
        lat["openapi"].append(time.perf_counter() - t0)
    for k, v in lat.items():
        print(f"create CRD -> {k:9s} {statistics.median(v) * 1000:7.1f} ms (median of 5)")

    before = rss_mib()
    t0 = time.perf_counter()
    for i in range(N_CRDS):
        ext.create_custom_resource_definition(crd_body(f"many{i}s", f"Many{i}", group=f"g{i}.example.com"))
    wait_established(f"many{N_CRDS - 1}s.g{N_CRDS - 1}.example.com")
    time.sleep(3)
    print(f"{N_CRDS} CRDs installed in {time.perf_counter() - t0:.1f} s; RSS {before:.0f} MiB -> {rss_mib():.0f} MiB")


main()
