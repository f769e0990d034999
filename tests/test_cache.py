"""The download path every asset shares: verified, resumable, atomic; served from a loopback HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from diffit_eval.assets.cache import atomic_path, download
from diffit_eval.errors import MissingAssetError, UserError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Handler(http.server.BaseHTTPRequestHandler):
    truncate_at: int | None = None  # send a full Content-Length but close early
    served_ranges: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.served_ranges.append(start)
            self.send_response(206)
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.truncate_at is not None:
            body = body[: self.truncate_at]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.truncate_at, Handler.served_ranges = None, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/asset.bin"
    httpd.shutdown()


def test_download_verifies_and_renames(server, tmp_path):
    dest = tmp_path / "asset.bin"
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    out = download(
        server,
        dest,
        what="asset",
        alternative="--x PATH",
        md5_prefix=md5[:8],
        progress=False,
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
    )
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert [p.name for p in tmp_path.iterdir()] == ["asset.bin"]


def test_corrupt_download_is_deleted(server, tmp_path):
    dest = tmp_path / "asset.bin"
    with pytest.raises(UserError, match="corrupt"):
        download(server, dest, what="asset", alternative="--x PATH", md5_prefix="00000000", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_truncated_download_is_kept_as_part_and_resumed(server, tmp_path):
    dest = tmp_path / "asset.bin"
    Handler.truncate_at = 300_000
    with pytest.raises(MissingAssetError, match="resume"):
        download(server, dest, what="asset", alternative="--x PATH", progress=False)
    assert not dest.exists()
    part = tmp_path / ".asset.bin.part"
    assert part.stat().st_size == 300_000
    Handler.truncate_at = None
    download(server, dest, what="asset", alternative="--x PATH", progress=False)
    assert Handler.served_ranges == [300_000]
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_offline_names_url_and_alternative(tmp_path):
    url = "http://127.0.0.1:9/nothing.bin"  # discard port: connection refused at once
    with pytest.raises(MissingAssetError) as e:
        download(url, tmp_path / "x.bin", what="asset", alternative="--x PATH", progress=False)
    assert url in str(e.value) and "--x PATH" in str(e.value) and e.value.code == 2
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    final = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(final) as tmp:
        tmp.write_text("whole")
    assert final.read_text() == "whole"
