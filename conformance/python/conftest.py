"""pytest fixtures: a real `ferrokube server` per test module, driven by the official client.

The binary is FERROKUBE_BIN, else <cargo target dir>/release/ferrokube (CARGO_TARGET_DIR or the
workspace's target/). hack/test.sh sets FERROKUBE_BIN.
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
from kubernetes import client, config

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "conformance" / "manifests"
READY_TIMEOUT = 90


def ferrokube_bin() -> pathlib.Path:
    if os.environ.get("FERROKUBE_BIN"):
        return pathlib.Path(os.environ["FERROKUBE_BIN"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "target"))
    if not target.is_absolute():
        target = ROOT / target
    return target / "release" / "ferrokube"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One running ferrokube process with its own data directory."""

    def __init__(self):
        binary = ferrokube_bin()
        if not binary.is_file():
            raise RuntimeError(f"ferrokube binary not found at {binary}: run `cargo build --release` or set FERROKUBE_BIN")
        self.data_dir = pathlib.Path(tempfile.mkdtemp(prefix="ferrokube-py-"))
        self.kubeconfig = self.data_dir / "admin.kubeconfig"
        self.log_path = self.data_dir / "server.log"
        self.port = free_port()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(binary), "server", "--data-dir", str(self.data_dir), "--secure-port", str(self.port),
             "--bind-address", "127.0.0.1"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        self.api_client = self._wait_ready()

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self) -> client.ApiClient:
        deadline = time.monotonic() + READY_TIMEOUT
        last = "admin.kubeconfig not written yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ferrokube exited with {self.proc.returncode} before ready; log:\n{self.log_tail()}")
            if self.kubeconfig.is_file():
                try:
                    api = config.new_client_from_config(config_file=str(self.kubeconfig))
                    resp = api.call_api("/readyz", "GET", auth_settings=["BearerToken"],
                                        _preload_content=False, _request_timeout=5)
                    status = resp[1] if isinstance(resp, tuple) else resp.status
                    if status == 200:
                        return api
                    last = f"/readyz answered {status}"
                except Exception as e:  # not up yet: connection refused, TLS, 500
                    last = repr(e)
            time.sleep(0.1)
        raise RuntimeError(f"ferrokube not ready after {READY_TIMEOUT}s; last probe: {last}\nlog:\n{self.log_tail()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(request):
    srv = Server()
    yield srv
    srv.stop()
    failed = getattr(request.module, "_ferrokube_failed", False)
    if failed or os.environ.get("FERROKUBE_TEST_KEEP"):
        print(f"ferrokube test data kept in {srv.data_dir}")
    else:
        shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item.module._ferrokube_failed = True
        srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
        if srv is not None:
            report.sections.append(("ferrokube server log (tail)", srv.log_tail()))


@pytest.fixture
def core(server):
    return client.CoreV1Api(server.api_client)


@pytest.fixture
def apps(server):
    return client.AppsV1Api(server.api_client)


@pytest.fixture
def unique():
    """A short unique suffix so tests sharing a server never collide."""
    return uuid.uuid4().hex[:8]
