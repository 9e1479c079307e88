"""`relama-bench weights fetch METHOD`: the released-checkpoint replicas served from 127.0.0.1 through the mirror.

The server is `http.server` in a thread, bound to 127.0.0.1 only, with per-file behaviours (drop the
connection midway, serve corrupted or truncated bytes first) and a log of every request's Range header.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from bench.cli.app import main
from bench.run import fetch as fetch_module
from bench.run.download import DownloadError, DownloadRefused, http_download, source_for, unpack
from bench.run.fetch import FetchedWeightsChanged, fetch_method, fetchable, fetched_weights, read_state
from methods.registry import get_method_class
from conftest import shared_path, write_photos


def _replica(method: str, name: str) -> bytes:
    return shared_path("golden", method, "replica", name).read_bytes()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mirror_files() -> dict[str, bytes]:
    """``<method>/<file>`` -> bytes, laid out as the official downloads are, holding the small replicas
    (MI-GAN's too, for when its adapter declares a release)."""
    return {
        "lama/big-lama.zip": _zip({
            "big-lama/config.yaml": _replica("lama", "replica_config_small.yaml"),
            "big-lama/models/best.ckpt": _replica("lama", "replica_best_small.ckpt"),
        }),
        "pluralistic/places2_random/latest_net_E.pth": _replica("pluralistic", "replica_latest_net_E_small.pth"),
        "pluralistic/places2_random/latest_net_G.pth": _replica("pluralistic", "replica_latest_net_G_small.pth"),
        "ict/ckpts_ICT.zip": _zip({
            "ckpts_ICT/Transformer/Places2_Nature.pth": _replica("ict", "replica_transformer_small.pth"),
            "ckpts_ICT/Upsample/Places2_Nature/InpaintingModel_gen.pth":
                _replica("ict", "replica_InpaintingModel_gen_small.pth"),
        }),
        "context-encoder/netG_streetview.pth": _replica("context_encoder", "replica_netG_streetview_small.pth"),
        "migan/migan_512_places2.pt": _replica("migan", "replica_migan_small.pt"),
    }


class LocalServer:
    """Serves ``files`` at ``http://127.0.0.1:<port>/<path>``; ``faults[path]`` lists what the next requests do:
    ``drop`` (declare the full length, send half, close), ``corrupt`` (same length, bytes flipped),
    ``truncate`` (the first half only, declared as such)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                server.requests.append((path, self.headers.get("Range")))
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                fault = server.faults.get(path, []).pop(0) if server.faults.get(path) else None
                if fault == "corrupt":
                    data = bytes(byte ^ 0x5A for byte in data)
                elif fault == "truncate":
                    data = data[: len(data) // 2]
                start = 0
                ranged = self.headers.get("Range")
                if ranged and fault in (None, "drop"):
                    start = int(ranged.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if fault == "drop":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "LocalServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def _replica_loader_check(method: str, weights: Path) -> None:
    """The real strict loader; the ICT replica is a small configuration, named by its head count."""
    from methods.registry import create_method

    if method == "ict":
        create_method(method, weights, n_head=2, progress=False)
    else:
        create_method(method, weights)


@pytest.fixture
def server(mirror_files, monkeypatch, tmp_path):
    """A mirror on 127.0.0.1 and an empty cache, both named through the environment."""
    monkeypatch.setenv("RELAMA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fetch_module, "registered_loader_check", _replica_loader_check)
    with LocalServer(mirror_files) as running:
        monkeypatch.setenv("RELAMA_BENCH_MIRROR", running.url)
        yield running


def test_the_deep_methods_declare_a_release():
    assert set(fetchable()) >= {"lama", "pluralistic", "ict", "context-encoder"}


@pytest.mark.parametrize("method", list(fetchable()))
def test_fetch_through_the_mirror_gives_the_release_layout(server, tmp_path, method):
    state = fetch_method(method, progress=False)
    folder = tmp_path / "cache" / "methods" / method
    assert state.state == "fetched" and state.folder == folder
    release = fetchable()[method].release
    for name in release.expected:
        assert (folder / name).is_file()
    assert state.weights == folder / release.weights == fetched_weights(method)
    for name, item in state.files.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == item["sha256"]
    assert not list((tmp_path / "cache" / "methods").glob(".*partial"))
    # A second fetch verifies and downloads nothing.
    before = len(server.requests)
    fetch_method(method, progress=False)
    assert len(server.requests) == before


def test_run_uses_fetched_lama_weights_without_the_weights_option(server, tmp_path, capsys):
    assert main(["weights", "fetch", "lama", "--no-progress"]) == 0
    photos = write_photos(tmp_path / "photos", count=1)
    code = main(["run", "--methods", "lama", "--data", str(photos), "--cases", "small", "--no-learned-metrics",
                 "--no-progress", "--runs-dir", str(tmp_path / "runs"), "--run-id", "r"])
    assert code == 0
    rows = pd.read_parquet(tmp_path / "runs" / "r" / "rows.parquet")
    assert set(rows["method"]) == {"lama"}
    config = (tmp_path / "runs" / "r" / "config.toml").read_text()
    assert str(tmp_path / "cache" / "methods" / "lama" / "big-lama" / "models" / "best.ckpt") in config
    listing = capsys.readouterr().out
    assert f"fetched: {tmp_path / 'cache' / 'methods' / 'lama' / 'big-lama' / 'models' / 'best.ckpt'}" in listing
    assert main(["list"]) == 0
    lama_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("lama "))
    assert " yes " in lama_row


def test_interrupted_download_resumes_with_a_range_request(server):
    server.faults["lama/big-lama.zip"] = ["drop"]
    fetch_method("lama", progress=False)
    ranges = [header for path, header in server.requests if path == "lama/big-lama.zip"]
    size = len(server.files["lama/big-lama.zip"])
    assert ranges[0] is None and ranges[1] == f"bytes={(size) // 2}-" and len(ranges) == 2


def test_partial_file_is_kept_and_the_next_call_resumes(server, tmp_path):
    url = f"{server.url}/lama/big-lama.zip"
    part = tmp_path / "big-lama.zip.part"
    server.faults["lama/big-lama.zip"] = ["drop", "drop"]
    with pytest.raises(DownloadError, match="resumes"):
        http_download(url, part, progress=False, attempts=1)
    held = part.stat().st_size
    assert 0 < held < len(server.files["lama/big-lama.zip"])
    with pytest.raises(DownloadError):  # second fault: resumes, then drops again
        http_download(url, part, progress=False, attempts=1)
    assert part.stat().st_size > held
    http_download(url, part, progress=False)
    assert part.read_bytes() == server.files["lama/big-lama.zip"]


def test_corrupted_archive_is_refused_and_fetched_again(server, capsys):
    server.faults["lama/big-lama.zip"] = ["corrupt"]
    state = fetch_method("lama", progress=False, log=print)
    assert state.state == "fetched"
    assert "neither a zip nor a tar archive; it is deleted" in capsys.readouterr().out
    assert [path for path, _ in server.requests].count("lama/big-lama.zip") == 2


def test_truncated_checkpoint_fails_the_loader_and_is_fetched_again(server):
    server.faults["context-encoder/netG_streetview.pth"] = ["truncate"]
    state = fetch_method("context-encoder", progress=False)
    cached = state.folder / "netG_streetview.pth"
    assert cached.read_bytes() == server.files["context-encoder/netG_streetview.pth"]


def test_published_sha256_refuses_other_bytes_twice_then_gives_up(server, monkeypatch):
    data = server.files["context-encoder/netG_streetview.pth"]
    adapter = get_method_class("context-encoder")
    release = adapter.weights_record.release
    pinned = replace(release, files=(replace(release.files[0], sha256=hashlib.sha256(data).hexdigest()),))
    monkeypatch.setattr(adapter, "weights_record", replace(adapter.weights_record, release=pinned))
    server.faults["context-encoder/netG_streetview.pth"] = ["corrupt"]
    assert fetch_method("context-encoder", progress=False).state == "fetched"
    server.faults["context-encoder/netG_streetview.pth"] = ["corrupt", "corrupt"]
    with pytest.raises(DownloadRefused, match="sha256"):
        fetch_method("context-encoder", progress=False, force=True)


def test_changed_cached_file_is_refused_by_run_and_fetched_again(server, tmp_path, capsys):
    state = fetch_method("lama", progress=False)
    checkpoint = state.folder / "big-lama" / "models" / "best.ckpt"
    data = bytearray(checkpoint.read_bytes())
    data[-100] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(FetchedWeightsChanged, match="relama-bench weights fetch lama"):
        fetched_weights("lama")
    photos = write_photos(tmp_path / "photos", count=1)
    assert main(["run", "--methods", "lama", "--data", str(photos), "--cases", "small", "--no-learned-metrics",
                 "--no-progress", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "changed since they were fetched" in capsys.readouterr().err
    assert read_state("lama").state == "changed"
    assert main(["weights", "fetch", "lama", "--no-progress"]) == 0
    assert read_state("lama").state == "fetched"


def test_directory_mirror_and_missing_file(mirror_files, monkeypatch, tmp_path, capsys):
    mirror = tmp_path / "mirror"
    target = mirror / "context-encoder" / "netG_streetview.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(mirror_files["context-encoder/netG_streetview.pth"])
    monkeypatch.setenv("RELAMA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RELAMA_BENCH_MIRROR", str(mirror))
    assert fetch_method("context-encoder", progress=False).state == "fetched"
    assert main(["weights", "fetch", "lama", "--no-progress"]) == 1
    assert "the mirror has no" in capsys.readouterr().out


def test_http_errors_are_one_sentence(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        http_download(f"{server.url}/nothing/here", tmp_path / "x.part", progress=False)


def test_mirror_replaces_every_official_source(monkeypatch):
    monkeypatch.delenv("RELAMA_BENCH_MIRROR", raising=False)
    for method, record in fetchable().items():
        for released in record.release.files:
            assert source_for(method, released).kind in ("http", "gdrive")
            mirrored = source_for(method, released, "https://mirror.example/weights/")
            assert mirrored.location == f"https://mirror.example/weights/{method}/{released.name}"
            assert source_for(method, released, "/srv/weights").location == f"/srv/weights/{method}/{released.name}"


@pytest.mark.parametrize("member", ["../escape.txt", "/abs.txt", "a/../../escape.txt"])
def test_zip_members_outside_the_folder_are_refused(tmp_path, member):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("ok.txt", b"fine")
        opened.writestr(member, b"bad")
    with pytest.raises(DownloadError, match="outside"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out" / "ok.txt").exists()


def test_tar_links_and_traversal_are_refused(tmp_path):
    for name, kind in (("../escape.txt", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        archive = tmp_path / "evil.tar"
        with tarfile.open(archive, "w") as opened:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
                opened.addfile(info)
            else:
                info.size = 3
                opened.addfile(info, io.BytesIO(b"bad"))
        with pytest.raises(DownloadError):
            unpack(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out" / "link").exists()


def test_tar_archives_unpack(tmp_path):
    archive = tmp_path / "ok.tar.gz"
    with tarfile.open(archive, "w:gz") as opened:
        info = tarfile.TarInfo("folder/file.bin")
        info.size = 4
        opened.addfile(info, io.BytesIO(b"data"))
    unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "folder" / "file.bin").read_bytes() == b"data"
