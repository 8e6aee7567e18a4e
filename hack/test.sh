#!/usr/bin/env bash
# The one test command: installs the stock clients, builds the release binary, runs every Rust
# test (release profile only, so heavy dependencies compile once) and the Python client tests,
# then prints a summary. Exits non-zero if anything failed.
#
#   hack/test.sh                 # everything
#   hack/test.sh -- FILTER       # pass FILTER (and anything after --) to `cargo test`
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CARGO_TEST_ARGS=()
if [[ "${1:-}" == "--" ]]; then
    shift
    CARGO_TEST_ARGS=("$@")
fi

if [[ "${CI:-}" == "true" ]]; then
    export CARGO_INCREMENTAL=0
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*" >&2; }

LOGDIR="$(mktemp -d)"
trap 'rm -rf "$LOGDIR"' EXIT

step "installing tools"
hack/install-tools.sh --etcd

step "cargo build --release (ferrokube binary)"
cargo build --release --bin ferrokube

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
export FERROKUBE_BIN="$TARGET_DIR/release/ferrokube"
[[ -x "$FERROKUBE_BIN" ]] || {
    echo "test.sh: $FERROKUBE_BIN missing after the build" >&2
    exit 1
}

step "cargo test --release --workspace --no-fail-fast"
set +e
cargo test --release --workspace --no-fail-fast ${CARGO_TEST_ARGS[@]+"${CARGO_TEST_ARGS[@]}"} 2>&1 | tee "$LOGDIR/cargo.log"
CARGO_RC=${PIPESTATUS[0]}
set -e

step "pytest conformance/python"
set +e
.tools/venv/bin/python -m pytest conformance/python -q -rfE --junitxml="$LOGDIR/pytest.xml"
PYTEST_RC=$?
set -e
if [[ $PYTEST_RC == 5 ]]; then
    echo "test.sh: pytest collected no tests in conformance/python" >&2
fi

# Count results: cargo's "test result:" lines and pytest's JUnit XML.
read -r CARGO_PASSED CARGO_FAILED < <(
    python3 - "$LOGDIR/cargo.log" <<'EOF'
import re, sys
passed = failed = 0
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"test result: \w+\. (\d+) passed; (\d+) failed", line)
    if m:
        passed += int(m.group(1))
        failed += int(m.group(2))
print(passed, failed)
EOF
)
read -r PY_PASSED PY_FAILED < <(
    python3 - "$LOGDIR/pytest.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print(0, 0)
    sys.exit()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = failed = skipped = 0
for s in suites:
    tests += int(s.get("tests", 0))
    failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
    skipped += int(s.get("skipped", 0))
print(tests - failed - skipped, failed)
EOF
)

STATUS=0
[[ $CARGO_RC == 0 ]] || STATUS=1
[[ $PYTEST_RC == 0 ]] || STATUS=1
# A crashed runner may report no failing test: count it as one failure so the summary is honest.
if [[ $CARGO_RC != 0 && $CARGO_FAILED == 0 ]]; then CARGO_FAILED=1; fi
if [[ $PYTEST_RC != 0 && $PY_FAILED == 0 ]]; then PY_FAILED=1; fi

echo
echo "cargo test: $CARGO_PASSED passed, $CARGO_FAILED failed (exit $CARGO_RC)"
echo "pytest:     $PY_PASSED passed, $PY_FAILED failed (exit $PYTEST_RC)"
echo "summary: $((CARGO_PASSED + PY_PASSED)) passed, $((CARGO_FAILED + PY_FAILED)) failed"
exit $STATUS
