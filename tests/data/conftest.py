"""Fixtures for the data tests: tiny synthetic IDX sets and a local HTTP server (127.0.0.1 only)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from src.data.sources import DATASETS, DatasetSpec, FileSpec
from tests.synthetic import make_synthetic_dataset


def spec_for(files: dict[str, Path], name: str = "tiny", system_dirs: tuple[Path, ...] = ()) -> DatasetSpec:
    """A test-only DatasetSpec whose checksums are those of ``files`` (from make_synthetic_dataset)."""
    base = DATASETS["fashion_mnist"]
    fspecs = {}
    for key, fs in base.files.items():
        gz = files[key].read_bytes()
        raw = gzip.decompress(gz)
        fspecs[key] = FileSpec(
            key,
            fs.filename,
            size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
            md5_gz=hashlib.md5(gz).hexdigest(),
        )
    return replace(base, name=name, files=fspecs, mirrors=(), system_dirs=system_dirs, apt_package=None)


@pytest.fixture
def make_spec():
    """The spec_for helper, as a fixture so test modules need not import conftest."""
    return spec_for


@pytest.fixture
def synth(tmp_path: Path) -> dict[str, Path]:
    """A tiny synthetic dataset in its own folder (not under any root used by the tests)."""
    return make_synthetic_dataset(tmp_path / "synth", n_train=40, n_test=20, seed=1)


@pytest.fixture
def no_system_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point every registered dataset's system folder at an empty temp folder."""
    empty = tmp_path / "system"
    empty.mkdir()
    for key, spec in list(DATASETS.items()):
        monkeypatch.setitem(DATASETS, key, replace(spec, system_dirs=(empty,)))
    return empty


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[str, bytes]] = {}

    def do_GET(self) -> None:
        mode, body = self.routes.get(self.path, ("missing", b""))
        if mode == "missing":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "short":
            # Promise the whole body, send a third of it, then drop the connection.
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def http_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, tuple[str, bytes]]]]:
    """Yield ``(base_url, routes)``; routes maps a path to ("ok" | "short", body)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    routes: dict[str, tuple[str, bytes]] = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
