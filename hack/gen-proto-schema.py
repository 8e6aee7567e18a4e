#!/usr/bin/env python3
"""Generate apiserver/machinery/src/protobuf/schema.txt, the protobuf schema table used to decode
Kubernetes protobuf request bodies (application/vnd.kubernetes.protobuf) into JSON.

Sources (both from the local cargo registry, neither is a dependency of any crate):
  * k8s-pb 0.9.0 (prost-generated Rust): message names, field tags, wire types, labels.
  * k8s-openapi 0.29.0 (src/v1_35): the JSON (camelCase) property names of each definition.
    Proto field `cluster_i_ps` is matched with JSON `clusterIPs` by comparing names lowercased
    with underscores removed.

Fetch them with: mkdir /tmp/kpb && cd /tmp/kpb && cargo init && cargo add k8s-pb@0.9.0 && cargo fetch
(k8s-openapi is a workspace dependency, so `cargo fetch` in the repo brings it.)

Output format (line based, deterministic):
  g <api group> <proto package prefix>      group -> package prefix (`<prefix>.<version>.<Kind>`)
  m <message full name>                     starts a message
  f <tag> <json name> <label> <type>        a field; label o(ptional) r(epeated) p (map)
        e (an embedded Go struct, inlined into this object; json name unused)
        type: string bool int32 int64 double bytes | a message full name
              for maps: <key>,<value> (value may be a message full name)
  a                                         the message is a JSON array of its field 1 (ExtraValue)

Usage: hack/gen-proto-schema.py [--check]   (--check: exit 1 if the committed file differs)
Unmatched JSON names are reported on stderr (and fall back to lowerCamelCase).
"""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "apiserver/machinery/src/protobuf/schema.txt")


def registry_dir(name):
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = sorted(glob.glob(os.path.join(home, "registry/src/*", name)))
    if not found:
        sys.exit(f"{name} not found in the cargo registry; see the docstring for how to fetch it")
    return found[-1]


def proto_pkg(rel_dir):
    """src/api/core/v1 -> k8s.io.api.core.v1"""
    return "k8s.io." + rel_dir.replace(os.sep, ".")


def openapi_name(msg):
    """k8s.io.apiextensions_apiserver.pkg... -> io.k8s.apiextensions-apiserver.pkg..."""
    rest = msg[len("k8s.io."):]
    return "io.k8s." + rest.replace("_", "-")


ATTR = re.compile(r'#\[prost\((.*)\)\]')
FIELD = re.compile(r'pub (?:r#)?(\w+): (.*),$')
STRUCT = re.compile(r'^pub struct (\w+) \{')
RESOURCE = re.compile(r'impl crate::Resource for (\w+) \{')
CONST = re.compile(r'const (API_VERSION|GROUP|KIND): &\'static str = "(.*)";')


def resolve(rust_type, pkg):
    """Resolves the message type of a prost field type to a full proto name."""
    t = rust_type
    for w in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        while t.startswith(w):
            t = t[len(w):-1]
    if t.startswith("::prost::alloc::collections::BTreeMap<"):
        t = t[len("::prost::alloc::collections::BTreeMap<"):-1]
        t = t.split(", ", 1)[1]
    parts = t.split("::")
    base = pkg.split(".")
    ups = 0
    while parts and parts[0] == "super":
        ups += 1
        parts = parts[1:]
    if ups:
        base = base[:-ups]
    return ".".join(base + parts)


def complete(line):
    """A field declaration is complete when its generics are balanced and it ends with a comma."""
    return line.endswith(",") and line.count("<") == line.count(">")


def parse_pb(src):
    messages = {}
    groups = {}
    for path in sorted(glob.glob(os.path.join(src, "**/mod.rs"), recursive=True)):
        rel = os.path.relpath(os.path.dirname(path), src)
        if rel == ".":
            continue
        pkg = proto_pkg(rel)
        cur = None
        attr = None
        res = None
        pending = None
        with open(path) as f:
            for line in f:
                line = line.strip()
                m = STRUCT.match(line)
                if m:
                    cur = pkg + "." + m.group(1)
                    messages[cur] = []
                    continue
                if line == "}":
                    cur = None
                    res = None
                    continue
                m = RESOURCE.match(line)
                if m:
                    res = {}
                    continue
                m = CONST.search(line)
                if m and res is not None:
                    res[m.group(1)] = m.group(2)
                    if "GROUP" in res and "API_VERSION" in res:
                        groups[res["GROUP"]] = pkg.rsplit(".", 1)[0]
                    continue
                m = ATTR.match(line)
                if m and cur:
                    attr = m.group(1)
                    continue
                if cur and attr and line.startswith("pub ") and not complete(line):
                    pending = line
                    continue
                if pending:
                    line = pending + " " + line
                    line = line.replace("< ", "<").replace(" >", ">").replace(",>", ">")
                    if not complete(line):
                        pending = line
                        continue
                    pending = None
                m = FIELD.match(line)
                if m and cur and attr:
                    messages[cur].append((m.group(1), attr, m.group(2), pkg))
                    attr = None
    return messages, groups


def parse_openapi(src):
    """definition name -> list of JSON property names; plus group -> package hints."""
    defs = {}
    groups = {}
    for path in sorted(glob.glob(os.path.join(src, "**/*.rs"), recursive=True)):
        with open(path) as f:
            text = f.read()
        names = re.findall(r'fn schema_name\(\) -> std::borrow::Cow<\'static, str> \{\s*"([^"]+)"', text)
        if len(names) != 1:
            continue
        props = re.findall(r'^\s*"([A-Za-z0-9$_-]+)" => Field::Key_', text, re.M)
        defs[names[0]] = props
        g = re.search(r'const GROUP: &\'static str = "(.*)";', text)
        if g and names[0].startswith("io.k8s.api."):
            pkg = "k8s.io." + names[0][len("io.k8s."):].rsplit(".", 2)[0]
            groups.setdefault(g.group(1), pkg)
    return defs, groups


def norm(s):
    return s.replace("_", "").replace("-", "").replace("$", "").lower()


def camel(s):
    p = s.split("_")
    return p[0] + "".join(x[:1].upper() + x[1:] for x in p[1:])


SCALARS = {"string", "bool", "int32", "int64", "double"}


def field_type(attr, rust_type, pkg):
    a = [x.strip() for x in attr.split(",")]
    if a[0].startswith("btree_map"):
        kv = attr.split('"')[1].replace(" ", "")
        k, v = kv.split(",")
        if v == "message":
            v = resolve(rust_type, pkg)
        return "p", f"{k},{v}"
    kind = a[0]
    label = "r" if "repeated" in a else "o"
    if kind.startswith("bytes"):
        return label, "bytes"
    if kind in SCALARS:
        return label, kind
    if kind == "message":
        return label, resolve(rust_type, pkg)
    raise SystemExit(f"unsupported prost attribute: {attr}")


def generate():
    pb = os.path.join(registry_dir("k8s-pb-0.9.0"), "src")
    oa = os.path.join(registry_dir("k8s-openapi-0.29.0"), "src", "v1_35")
    messages, groups = parse_pb(pb)
    defs, ogroups = parse_openapi(oa)
    for g, p in ogroups.items():
        groups.setdefault(g, p)
    groups.setdefault("meta.k8s.io", "k8s.io.apimachinery.pkg.apis.meta")
    out = ["# @generated by hack/gen-proto-schema.py from k8s-pb 0.9.0 + k8s-openapi 0.29.0 (v1_35); do not edit"]
    for g in sorted(groups):
        out.append(f"g {g or '-'} {groups[g]}")
    # prost renames messages (AWSElastic... -> AwsElastic..., JSONSchemaProps -> JsonSchemaProps);
    # recover the upstream name from the OpenAPI definition with the same name ignoring case.
    by_lower = {k.lower(): k for k in defs}
    rename = {}
    for name in messages:
        d = by_lower.get(openapi_name(name).lower())
        rename[name] = name.rsplit(".", 1)[0] + "." + d.rsplit(".", 1)[1] if d else name
    props_of = {n: defs.get(openapi_name(rename[n])) for n in messages}
    # Go embedded structs have no definition of their own: their fields take the JSON names of
    # the definitions that embed them.
    for _ in range(3):
        for name, fields in messages.items():
            props = props_of[name]
            if not props:
                continue
            keys = {norm(p) for p in props}
            for rust_name, attr, rust_type, pkg in fields:
                if norm(rust_name) in keys or not attr.startswith("message, optional"):
                    continue
                child = resolve(rust_type, pkg)
                if child in props_of and not defs.get(openapi_name(rename[child])):
                    props_of[child] = sorted(set(props_of[child] or []) | set(props))
    unmatched = []
    for name in sorted(messages, key=lambda n: rename[n]):
        fields = messages[name]
        props = props_of[name]
        out.append(f"m {rename[name]}")
        if (props is None and len(fields) == 1 and fields[0][0] == "items"
                and fields[0][1].startswith("string, repeated")):
            out.append("a")
        by_norm = {norm(p): p for p in (props or [])}
        for rust_name, attr, rust_type, pkg in fields:
            tag = re.search(r'tag = "(\d+)"', attr).group(1)
            label, ty = field_type(attr, rust_type, pkg)
            if "," in ty:
                k, v = ty.split(",")
                ty = f"{k},{rename.get(v, v)}"
            else:
                ty = rename.get(ty, ty)
            json = by_norm.get(norm(rust_name))
            if json is None:
                json = camel(rust_name)
                if props and label == "o" and ty not in SCALARS and ty != "bytes":
                    # A Go embedded struct: its fields are inlined into this object.
                    label = "e"
                elif props:
                    unmatched.append(f"{name}.{rust_name} -> {json}")
            out.append(f"f {tag} {json} {label} {ty}")
    for u in unmatched:
        print(f"unmatched (lowerCamelCase used): {u}", file=sys.stderr)
    return "\n".join(out) + "\n"


def main():
    text = generate()
    if "--check" in sys.argv[1:]:
        try:
            with open(OUT) as f:
                old = f.read()
        except FileNotFoundError:
            old = ""
        if old != text:
            sys.exit(f"{OUT} is stale; run hack/gen-proto-schema.py")
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
