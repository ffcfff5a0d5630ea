"""The real download code against a local HTTP server on 127.0.0.1 serving the real files.

The server serves ../shared/data's Fashion-MNIST files (Debian re-gzipped: they verify by
the official md5 of the decompressed IDX data) and archives built here from the shared
CIFAR-10 pickles. It can honour or ignore `Range`, and drop a connection half-way.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tractable.cli import main as cli_main
from tractable.data import cifar, load_dataset
from tractable.data.download import RemoteFile, check_zip, fetch
from tractable.errors import ChecksumError, DataError

LABELS = "t10k-labels-idx1-ubyte.gz"
IMAGES = "t10k-images-idx3-ubyte.gz"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        srv = self.server
        path = Path(self.directory) / self.path.lstrip("/")
        rng = self.headers.get("Range")
        if not path.is_file():
            srv.log.append((self.path, rng, 404, 0))
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start = int(rng.split("=")[1].split("-")[0]) if rng and srv.ranges else 0
        if start >= len(data) and start:
            srv.log.append((self.path, rng, 416, 0))
            self.send_error(416, "Range Not Satisfiable")
            return
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drop_after is not None:  # announce everything, send part, hang up
            body = body[: srv.drop_after]
            srv.drop_after = None
            self.close_connection = True
        self.wfile.write(body)
        srv.log.append((self.path, rng, 206 if start else 200, len(body)))


class LocalServer:
    def __init__(self, directory: Path):
        self.dir = directory
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))
        self.httpd.log, self.httpd.ranges, self.httpd.drop_after = [], True, None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def log(self):
        return self.httpd.log

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("TRACTABLE_MIRROR", raising=False)
    served = tmp_path / "served"
    served.mkdir()
    s = LocalServer(served)
    yield s
    s.close()


def _serve_fashion(server, shared_data, names=(LABELS, IMAGES)):
    for n in names:
        shutil.copy(shared_data / "fashion-mnist" / n, server.dir / n)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_download_then_load_fashion_mnist_via_env_vars(server, shared_data, tmp_path,
                                                       monkeypatch):
    _serve_fashion(server, shared_data)
    monkeypatch.setenv("TRACTABLE_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("TRACTABLE_MIRROR", server.url)
    ds = load_dataset("fashion-mnist", "test", download=True, progress=False)
    assert len(ds) == 10000 and ds.class_counts().tolist() == [1000] * 10
    assert ds.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    cache = tmp_path / "cache" / "fashion-mnist"
    assert _leftovers(cache) == [IMAGES, LABELS]  # no .part files remain
    for n in (IMAGES, LABELS):
        assert (cache / n).read_bytes() == (shared_data / "fashion-mnist" / n).read_bytes()
    # A second call finds the files and makes no request.
    requests = len(server.log)
    load_dataset("fashion-mnist", "test", download=True)
    assert len(server.log) == requests


def test_checksum_mismatch_raises_and_keeps_nothing(server, shared_data, tmp_path):
    _serve_fashion(server, shared_data, [IMAGES])
    raw = bytearray((shared_data / "fashion-mnist" / LABELS).read_bytes())
    raw[-20] ^= 0xFF  # one flipped byte
    (server.dir / LABELS).write_bytes(bytes(raw))
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as e:
        load_dataset("fashion-mnist", "test", root=cache, download=True, mirrors=[server.url],
                     progress=False)
    msg = str(e.value)
    actual = hashlib.md5(bytes(raw)).hexdigest()
    assert LABELS in msg and "bb300cfdad3c16e7a12a480ee83cd310" in msg and actual in msg
    assert server.url in msg
    assert _leftovers(cache) == [IMAGES]  # the verified file stays; nothing half-written


def test_dropped_connection_keeps_part_and_next_call_resumes_with_range(server, shared_data,
                                                                        tmp_path):
    _serve_fashion(server, shared_data, [IMAGES])
    size = (server.dir / IMAGES).stat().st_size
    remote = RemoteFile(IMAGES, "bef4ecab320f06d8554ea6380940ec79",
                        "8181f5470baa50b63fa0f6fddb340f0a")
    server.httpd.drop_after = 1_000_000
    with pytest.raises(DataError, match=r"(?s)could not download .*received 1000000 of "
                                        rf"{size} bytes.*\.part \(1000000 bytes\) is kept"):
        fetch(remote, tmp_path, [server.url], progress=False)
    assert (tmp_path / (IMAGES + ".part")).stat().st_size == 1_000_000
    assert not (tmp_path / IMAGES).exists()
    path = fetch(remote, tmp_path, [server.url], progress=False)
    assert server.log[-1] == ("/" + IMAGES, "bytes=1000000-", 206, size - 1_000_000)
    assert path.read_bytes() == (server.dir / IMAGES).read_bytes()
    assert not (tmp_path / (IMAGES + ".part")).exists()


def test_server_without_range_support_restarts_from_zero(server, shared_data, tmp_path):
    _serve_fashion(server, shared_data, [LABELS])
    server.httpd.ranges = False
    real = (server.dir / LABELS).read_bytes()
    (tmp_path / (LABELS + ".part")).write_bytes(b"\x00" * 100)  # a wrong prefix
    remote = RemoteFile(LABELS, hashlib.md5(real).hexdigest())
    fetch(remote, tmp_path, [server.url], progress=False)
    assert server.log[-1] == ("/" + LABELS, "bytes=100-", 200, len(real))
    assert (tmp_path / LABELS).read_bytes() == real


def test_resumed_bad_prefix_fails_checksum_and_is_deleted(server, shared_data, tmp_path):
    _serve_fashion(server, shared_data, [LABELS])
    real = (server.dir / LABELS).read_bytes()
    (tmp_path / (LABELS + ".part")).write_bytes(b"\x00" * 100)
    with pytest.raises(ChecksumError, match="The file was deleted"):
        fetch(RemoteFile(LABELS, hashlib.md5(real).hexdigest()), tmp_path, [server.url],
              progress=False)
    assert not (tmp_path / (LABELS + ".part")).exists() and not (tmp_path / LABELS).exists()


def test_404_names_every_url_and_a_later_mirror_is_used(server, shared_data, tmp_path):
    empty = server.url + "nothing-here/"
    with pytest.raises(DataError, match=rf"could not download {IMAGES}:\n  "
                                        rf"{empty}{IMAGES}: HTTP 404 Not Found"):
        load_dataset("fashion-mnist", "test", root=tmp_path / "c", download=True,
                     mirrors=[empty], progress=False)
    assert _leftovers(tmp_path / "c") == []
    _serve_fashion(server, shared_data)
    dead = "http://127.0.0.1:9/"  # nothing listens on the discard port
    ds = load_dataset("fashion-mnist", "test", root=tmp_path / "c", download=True,
                      mirrors=[empty, dead, server.url], progress=False)
    assert len(ds) == 10000


def _cifar_tar(shared_data, dest: Path) -> str:
    """A cifar-10-python.tar.gz in the official layout from the shared pickles; its md5."""
    src = shared_data / "cifar10-first4000" / "cifar-10-batches-py"
    with tarfile.open(dest, "w:gz") as t:
        for name in ("batches.meta", "data_batch_1"):
            t.add(src / name, arcname=f"cifar-10-batches-py/{name}")
    return hashlib.md5(dest.read_bytes()).hexdigest()


def test_cifar10_archive_download_extract_and_load(server, shared_data, tmp_path, monkeypatch):
    md5 = _cifar_tar(shared_data, server.dir / "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE", RemoteFile("cifar-10-python.tar.gz", md5))
    ds = load_dataset("cifar10", "train", root=tmp_path / "c", download=True,
                      mirrors=[server.url], progress=False, batches=[1])
    assert ds.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert ds.images[0, 0, 0, :5].tolist() == [59, 43, 50, 68, 98]
    assert _leftovers(tmp_path / "c") == ["batches.meta", "cifar-10-batches-py",
                                          "cifar-10-python.tar.gz", "data_batch_1"]
    # The same archive under the official checksum is refused, and nothing is left behind.
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE", RemoteFile(
        "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"))
    with pytest.raises(ChecksumError, match="expected md5 c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", "train", root=tmp_path / "d", download=True,
                     mirrors=[server.url], progress=False, batches=[1])
    assert _leftovers(tmp_path / "d") == []


def test_archive_with_unsafe_paths_is_refused(server, tmp_path, monkeypatch):
    evil = server.dir / "cifar-10-python.tar.gz"
    with tarfile.open(evil, "w:gz") as t:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        t.addfile(info, io.BytesIO(b"bad"))
    md5 = hashlib.md5(evil.read_bytes()).hexdigest()
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE", RemoteFile("cifar-10-python.tar.gz", md5))
    with pytest.raises(DataError, match=r"unsafe path '\.\./escaped\.txt'"):
        load_dataset("cifar10", "test", root=tmp_path / "c", download=True,
                     mirrors=[server.url], progress=False)
    assert not (tmp_path / "escaped.txt").exists()


def test_imagenet_zip_without_checksum_is_verified_by_format(server, shared_data, tmp_path):
    import pickle

    with open(shared_data / "cifar10-first4000/cifar-10-batches-py/data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    buf = io.BytesIO()
    np.savez(buf, data=d[b"data"][:40], labels=np.asarray(d[b"labels"][:40]) + 1)
    good = server.dir / "Imagenet32_val_npz.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("Imagenet32_val_npz/val_data.npz", buf.getvalue())
    ds = load_dataset("imagenet32", "test", root=tmp_path / "c", download=True,
                      mirrors=[server.url], progress=False)
    assert ds.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert torch.equal(ds.images, torch.from_numpy(d[b"data"][:40]).view(-1, 3, 32, 32))
    # A truncated zip fails the format check and is deleted.
    raw = good.read_bytes()
    good.write_bytes(raw[: len(raw) - 200])
    with pytest.raises(DataError, match=r"Imagenet32_val_npz\.zip \(from http.*\) is broken: "
                                        r"not a valid zip archive.*deleted"):
        load_dataset("imagenet32", "test", root=tmp_path / "d", download=True,
                     mirrors=[server.url], progress=False)
    assert _leftovers(tmp_path / "d") == []
    with pytest.raises(DataError, match="not a valid zip"):
        check_zip(server.dir / "Imagenet32_val_npz.zip")


def test_cli_download_and_show(server, shared_data, tmp_path, capsys):
    _serve_fashion(server, shared_data)
    root = tmp_path / "fm"
    assert cli_main(["data", "download", "fashion-mnist", "--split", "test", "--root",
                     str(root), "--mirror", server.url]) == 0
    assert "fashion-mnist test: 10000 images of shape (1, 28, 28), 10 classes" in \
        capsys.readouterr().out
    out = tmp_path / "g.png"
    assert cli_main(["data", "show", "fashion-mnist", "--root", str(root), "-n", "4",
                     "--out", str(out)]) == 0
    assert out.is_file()
    assert cli_main(["data", "show", "fashion-mnist", "--split", "train", "--root",
                     str(root), "--out", str(out)]) == 2
    assert "missing train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_complete_part_file_answered_416_is_fetched_again(server, shared_data, tmp_path):
    _serve_fashion(server, shared_data, [LABELS])
    real = (server.dir / LABELS).read_bytes()
    (tmp_path / (LABELS + ".part")).write_bytes(real)  # e.g. killed just before the rename
    fetch(RemoteFile(LABELS, hashlib.md5(real).hexdigest()), tmp_path, [server.url],
          progress=False)
    assert [e[2] for e in server.log] == [416, 200]
    assert (tmp_path / LABELS).read_bytes() == real
