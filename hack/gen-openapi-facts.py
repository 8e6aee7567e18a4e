#!/usr/bin/env python3
"""Extract the x-kubernetes-* schema facts for Kubernetes 1.35 into a compact committed table.

k8s-openapi's schemars output carries types and descriptions but not the x-kubernetes-* facts
(patch strategy and merge key, list type and map keys, map type, group-version-kind, unions).
Those ship in the PyPI package `kubernetes-validate`
(kubernetes_validate/kubernetes-json-schema/v1.35.0-local/_definitions.json). This script keeps
only the facts plus the definition each property refers to (so a patcher can walk from a kind
down a field path), sorted, with no descriptions, and writes
apiserver/machinery/src/openapi/facts.json.

Usage:
    pip install 'kubernetes-validate==1.37.0'
    python3 hack/gen-openapi-facts.py           # regenerate
    python3 hack/gen-openapi-facts.py --check   # regenerate in memory, fail on diff (CI)
    python3 hack/gen-openapi-facts.py --report  # also list names k8s-openapi spells differently
"""

import argparse
import glob
import json
import os
import re
import sys

K8S_VERSION = "v1.35.0-local"
OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "apiserver", "machinery", "src", "openapi", "facts.json",
)
FACT_KEYS = (
    "x-kubernetes-group-version-kind",
    "x-kubernetes-patch-strategy",
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-unions",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
)
REF_PREFIX = "#/$defs/"


def fail(msg):
    print("gen-openapi-facts: " + msg, file=sys.stderr)
    sys.exit(1)


def load_source():
    try:
        import kubernetes_validate  # noqa: PLC0415 (optional dependency, checked here)
    except ImportError:
        fail("the PyPI package kubernetes-validate is missing: pip install 'kubernetes-validate==1.37.0'")
    base = os.path.dirname(kubernetes_validate.__file__)
    path = os.path.join(base, "kubernetes-json-schema", K8S_VERSION, "_definitions.json")
    if not os.path.exists(path):
        fail("%s not found in kubernetes-validate at %s" % (K8S_VERSION, base))
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    defs = doc.get("$defs") or doc.get("definitions")
    if not isinstance(defs, dict):
        fail("no $defs/definitions in " + path)
    return defs


def ref_name(schema):
    """The definition a schema refers to, directly or through a single-element allOf."""
    if not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if ref is None and isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
        ref = schema["allOf"][0].get("$ref")
    if isinstance(ref, str):
        for prefix in (REF_PREFIX, "#/definitions/", "#/components/schemas/"):
            if ref.startswith(prefix):
                return ref[len(prefix):]
    return None


def stray_facts(schema, where):
    """Facts at positions the table does not model (items, additionalProperties...) are an error."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in FACT_KEYS:
                fail("fact %s at %s is not at definition or property level" % (key, where))
            if key in ("items", "additionalProperties", "not"):
                stray_facts(value, where + "." + key)
            elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
                for i, sub in enumerate(value):
                    stray_facts(sub, "%s.%s[%d]" % (where, key, i))


def field_entry(prop, where):
    entry = {k: prop[k] for k in FACT_KEYS if k in prop}
    direct = ref_name(prop)
    if direct:
        entry["ref"] = direct
    items = ref_name(prop.get("items"))
    if items:
        entry["items"] = items
    values = ref_name(prop.get("additionalProperties"))
    if values:
        entry["values"] = values
    for key in ("items", "additionalProperties"):
        stray_facts(prop.get(key), where + "." + key)
    return entry


def extract(defs):
    out = {}
    for name in sorted(defs):
        schema = defs[name]
        entry = {k: schema[k] for k in FACT_KEYS if k in schema}
        fields = {}
        for prop_name, prop in sorted((schema.get("properties") or {}).items()):
            f = field_entry(prop, name + "." + prop_name)
            if f:
                fields[prop_name] = f
        if fields:
            entry["fields"] = fields
        if entry:
            out[name] = entry
    return out


def render(facts, source_note):
    # One definition per line: compact, yet diffs stay readable.
    lines = ['{"source":' + json.dumps(source_note) + ',"definitions":{']
    names = sorted(facts)
    for i, name in enumerate(names):
        body = json.dumps(facts[name], sort_keys=True, separators=(",", ":"))
        lines.append(json.dumps(name) + ":" + body + ("," if i + 1 < len(names) else ""))
    lines.append("}}")
    return "\n".join(lines) + "\n"


def k8s_openapi_names():
    home = os.environ.get("CARGO_HOME") or os.path.expanduser("~/.cargo")
    roots = sorted(glob.glob(os.path.join(home, "registry", "src", "*", "k8s-openapi-0.29.*", "src", "v1_35")))
    if not roots:
        return None
    pat = re.compile(r'fn schema_name\(\) -> std::borrow::Cow<\'static, str> \{\s*"([^"]+)"\.into\(\)')
    names = set()
    for path in glob.glob(os.path.join(roots[-1], "**", "*.rs"), recursive=True):
        with open(path, encoding="utf-8") as f:
            names.update(pat.findall(f.read()))
    return names


def report(defs):
    names = k8s_openapi_names()
    if names is None:
        print("report: k8s-openapi 0.29 sources not found under $CARGO_HOME/registry; run cargo fetch", file=sys.stderr)
        return
    upstream = set(defs)
    only_up = sorted(upstream - names)
    only_rs = sorted(names - upstream)
    print("report: %d upstream definitions, %d k8s-openapi schema names, %d in common"
          % (len(upstream), len(names), len(upstream & names)), file=sys.stderr)
    for n in only_up:
        print("  only upstream:    " + n, file=sys.stderr)
    for n in only_rs:
        print("  only k8s-openapi: " + n, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed table differs")
    ap.add_argument("--report", action="store_true", help="compare names with k8s-openapi")
    args = ap.parse_args()

    defs = extract_defs = load_source()
    facts = extract(extract_defs)
    import kubernetes_validate  # noqa: PLC0415 (already imported by load_source)
    version = getattr(kubernetes_validate, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version  # noqa: PLC0415
        version = dist_version("kubernetes-validate")
    note = "kubernetes-validate %s kubernetes-json-schema/%s/_definitions.json" % (version, K8S_VERSION)
    text = render(facts, note)

    if args.report:
        report(defs)
    if args.check:
        try:
            with open(OUT, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            fail("%s is missing; run hack/gen-openapi-facts.py" % OUT)
        # The package version may move on; only the facts must not.
        strip = lambda t: t.split("\n", 1)[1] if "\n" in t else t  # noqa: E731
        if strip(current) != strip(text):
            fail("%s is stale; run hack/gen-openapi-facts.py and commit the result" % os.path.normpath(OUT))
        print("gen-openapi-facts: %s is up to date (%d definitions)" % (os.path.normpath(OUT), len(facts)))
        return
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print("gen-openapi-facts: wrote %s (%d definitions, %d bytes)" % (os.path.normpath(OUT), len(facts), len(text)))


if __name__ == "__main__":
    main()
