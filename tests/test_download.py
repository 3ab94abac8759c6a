"""Downloads and extraction against a loopback HTTP server: checksums, resume, unsafe archives, fetch_real."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from attnrobust.data import download as dl
from attnrobust.data import sources
from attnrobust.data.download import download, safe_extract
from attnrobust.data.sources import SOURCES, fetch_real
from attnrobust.errors import UserError

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes
FAST = {"timeout": 5, "retry_wait": 0.0}  # bound every network wait in these tests


# --------------------------------------------------------------------------- loopback server


@dataclass
class FileServer:
    """What the loopback server serves and what it saw."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    redirects: dict[str, str] = field(default_factory=dict)  # URL path -> Location
    cut_after: int | None = None  # first GET sends only this many body bytes, then hangs up
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    range_headers: list[str | None] = field(default_factory=list)  # Range header of each GET

    def serve(self, path: str, body: bytes) -> str:
        """Serve ``body`` at ``path`` and return its full URL."""
        self.files[path] = body
        return self.url + path


def _handler(state: FileServer) -> type[BaseHTTPRequestHandler]:
    """A GET handler with byte-range support (``bytes=N-`` and ``bytes=N-M``)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 5

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = state.files.get(self.path)
            rng = self.headers.get("Range")
            state.range_headers.append(rng)
            if self.path in state.redirects:
                self.send_response(302)
                self.send_header("Location", state.redirects[self.path])
                self.end_headers()
                return
            if body is None:
                self.send_error(404)
                return
            start, end = 0, len(body) - 1
            if rng and not state.ignore_range:
                first, _, last = rng.removeprefix("bytes=").partition("-")
                start, end = int(first), int(last) if last else end
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            chunk = body[start : end + 1]
            if state.cut_after is not None:
                chunk, state.cut_after = chunk[: state.cut_after], None  # only the first request
            self.wfile.write(chunk)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --------------------------------------------------------------------------- download


def test_download_verifies_md5_and_leaves_no_part(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/a.bin", PAYLOAD)
    dest = tmp_path / "a.bin"
    assert download(url, dest, md5(PAYLOAD), **FAST) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()


def test_download_skips_a_file_that_is_already_right(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/a.bin", PAYLOAD)
    download(url, tmp_path / "a.bin", md5(PAYLOAD), **FAST)
    download(url, tmp_path / "a.bin", md5(PAYLOAD), **FAST)
    assert len(server.range_headers) == 1  # the second call made no request


def test_md5_mismatch_raises_and_keeps_nothing(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/a.bin", PAYLOAD)
    dest = tmp_path / "a.bin"
    with pytest.raises(UserError, match="a.bin") as err:
        download(url, dest, "0" * 32, **FAST)
    assert "0" * 32 in str(err.value) and md5(PAYLOAD) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_keeps_part_and_next_call_resumes(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/a.bin", PAYLOAD)
    dest = tmp_path / "a.bin"
    server.cut_after = 3000
    with pytest.raises(UserError, match="resume"):
        download(url, dest, md5(PAYLOAD), retries=0, **FAST)
    assert (tmp_path / "a.bin.part").stat().st_size == 3000 and not dest.exists()

    download(url, dest, md5(PAYLOAD), **FAST)
    assert server.range_headers == [None, "bytes=3000-"]
    assert dest.read_bytes() == PAYLOAD


def test_retry_resumes_within_one_call(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/a.bin", PAYLOAD)
    server.cut_after = 100
    download(url, tmp_path / "a.bin", md5(PAYLOAD), retries=1, **FAST)
    assert server.range_headers == [None, "bytes=100-"]
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/a.bin", PAYLOAD)
    server.ignore_range = True
    (tmp_path / "a.bin.part").write_bytes(b"stale bytes from another file")
    download(url, tmp_path / "a.bin", md5(PAYLOAD), **FAST)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_complete_part_is_finished_without_refetching(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/a.bin", PAYLOAD)
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    download(url, tmp_path / "a.bin", md5(PAYLOAD), **FAST)
    assert server.range_headers == ["bytes=10240-"]  # answered 416: nothing left to send
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_corrupt_dest_is_fetched_again(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/a.bin", PAYLOAD)
    (tmp_path / "a.bin").write_bytes(b"truncated")
    download(url, tmp_path / "a.bin", md5(PAYLOAD), **FAST)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_http_error_is_a_user_error(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="HTTP 404"):
        download(server.url + "/missing.zip", tmp_path / "m.zip", None, **FAST)


def test_redirect_away_from_https_is_refused(server: FileServer, tmp_path: Path) -> None:
    server.redirects["/a.zip"] = "http://example.com/a.zip"
    with pytest.raises(UserError, match="refusing .*example.com"):
        download(server.url + "/a.zip", tmp_path / "a.zip", None, **FAST)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url", ["http://example.com/a.zip", "ftp://127.0.0.1/a.zip", "file:///etc/passwd", "https:///a.zip"]
)
def test_only_https_or_loopback_http_is_allowed(url: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="https"):
        download(url, tmp_path / "a.zip", None, **FAST)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- extraction


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    """Members are (name, data) regular files or ready TarInfos (links)."""
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return path


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def assert_nothing_extracted(root: Path) -> None:
    """Only the archive's folder is left: no dest, no staging dir, no escaped ``root/evil``."""
    assert sorted(p.name for p in root.iterdir()) == ["bad"]


@pytest.mark.parametrize("name", ["../evil", "ok/../../evil", "/tmp/evil_abs", "C:/evil"])
def test_zip_with_escaping_member_is_refused(tmp_path: Path, name: str) -> None:
    root = tmp_path / "root"
    (root / "bad").mkdir(parents=True)
    archive = make_zip(root / "bad" / "a.zip", {"fine.txt": b"ok", name: b"evil"})
    with pytest.raises(UserError, match="refusing") as err:
        safe_extract(archive, root / "out")
    assert repr(name) in str(err.value)
    assert_nothing_extracted(root)


@pytest.mark.parametrize(
    "member",
    [
        ("/tmp/evil_abs", b"x"),  # absolute path
        ("../evil", b"x"),  # .. escapes
        link("l", "../../evil"),  # symlink escaping
        link("l", "/etc/passwd"),  # absolute symlink
        link("h", "../evil", tarfile.LNKTYPE),  # hardlink escaping
        link("d/l", ".."),  # harmless link on its own ...
    ],
    ids=["abs", "dotdot", "symlink", "abs-symlink", "hardlink", "through-link"],
)
def test_tar_with_escaping_member_is_refused(
    tmp_path: Path, member: tarfile.TarInfo | tuple[str, bytes]
) -> None:
    root = tmp_path / "root"
    (root / "bad").mkdir(parents=True)
    members = [("fine.txt", b"ok"), member]
    if isinstance(member, tarfile.TarInfo) and member.name == "d/l":
        members.append(("d/l/../../evil", b"x"))  # ... but this member walks through it
    archive = make_tar(root / "bad" / "a.tar.gz", members)
    with pytest.raises(UserError, match="refusing"):
        safe_extract(archive, root / "out")
    assert_nothing_extracted(root)


def test_safe_archives_extract_and_merge(tmp_path: Path) -> None:
    out = tmp_path / "out"
    safe_extract(make_zip(tmp_path / "a.zip", {"top/a.txt": b"A"}), out)
    tar = make_tar(tmp_path / "b.tar.gz", [("top/b.txt", b"B"), link("top/alias.txt", "b.txt")])
    safe_extract(tar, out)
    assert (out / "top" / "a.txt").read_bytes() == b"A"
    assert (out / "top" / "alias.txt").read_bytes() == b"B"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "b.tar.gz", "out"]


def test_corrupt_archive_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "a.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="re-download"):
        safe_extract(tmp_path / "a.zip", tmp_path / "out")


def test_rar_without_extractor_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl.shutil, "which", lambda name: None)
    (tmp_path / "UCF101.rar").write_bytes(b"Rar!")
    with pytest.raises(UserError, match="unar"):
        safe_extract(tmp_path / "UCF101.rar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rar_uses_unar_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "unar"  # writes one clip into the directory after -output-directory
    fake.write_text(
        '#!/bin/sh\nwhile [ "$1" != "-output-directory" ]; do shift; done\n'
        'mkdir -p "$2/UCF-101/YoYo" && printf avi > "$2/UCF-101/YoYo/v_YoYo_g01_c01.avi"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "UCF101.rar").write_bytes(b"Rar!")
    safe_extract(tmp_path / "UCF101.rar", tmp_path / "out")
    assert (tmp_path / "out" / "UCF-101" / "YoYo" / "v_YoYo_g01_c01.avi").read_bytes() == b"avi"


# --------------------------------------------------------------------------- sources and fetch_real


def test_source_table_is_https_with_md5_or_none() -> None:
    for dataset, entries in SOURCES.items():
        for s in entries:
            assert urlsplit(s.url).scheme == "https", s
            assert s.url.endswith("/" + s.filename)
            assert s.md5 is None or (len(s.md5) == 32 and int(s.md5, 16) >= 0), s
    coco = [s.filename for s in sources.sources_for("coco")]
    assert coco == ["val2017.zip", "annotations_trainval2017.zip"]  # train2017 only on request
    assert len(sources.sources_for("coco", include_train=True)) == 3
    with pytest.raises(UserError, match="imagenet"):
        sources.sources_for("imagenet")


def gtsrb_archives(tmp_path: Path) -> dict[str, bytes]:
    """Tiny zips laid out like the official GTSRB ones, keyed by official file name."""
    ppm = b"P6\n1 1\n255\n\x00\x00\x00"
    header = b"Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
    layouts = {
        "GTSRB-Training_fixed.zip": {
            **{f"GTSRB/Training/{c:05d}/00000_00000.ppm": ppm for c in range(3)},
            **{f"GTSRB/Training/{c:05d}/GT-{c:05d}.csv": header for c in range(3)},
        },
        "GTSRB_Final_Test_Images.zip": {
            "GTSRB/Final_Test/Images/00000.ppm": ppm,
            "GTSRB/Final_Test/Images/GT-final_test.test.csv": header,
        },
        "GTSRB_Final_Test_GT.zip": {"GT-final_test.csv": header + b"00000.ppm;1;1;0;0;1;1;2\n"},
    }
    return {name: make_zip(tmp_path / name, members).read_bytes() for name, members in layouts.items()}


def serve_gtsrb(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str = "") -> None:
    """Serve tiny GTSRB zips at the official paths, their md5s in the table (``bad`` gets a wrong one)."""
    archives = gtsrb_archives(tmp_path)
    table = []
    for s in SOURCES["gtsrb"]:
        server.serve(urlsplit(s.url).path, archives[s.filename])
        table.append(replace(s, md5="0" * 32 if s.filename == bad else md5(archives[s.filename])))
    monkeypatch.setitem(SOURCES, "gtsrb", tuple(table))


def test_fetch_real_gtsrb_produces_torchvision_layout(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_gtsrb(server, _fresh(tmp_path / "zips"), monkeypatch)
    out = tmp_path / "raw" / "gtsrb"
    fetch_real("gtsrb", out, base_url=server.url)
    assert sorted(p.name for p in (out / "GTSRB" / "Training").iterdir()) == ["00000", "00001", "00002"]
    assert (out / "GTSRB" / "Training" / "00002" / "GT-00002.csv").exists()
    assert (out / "GTSRB" / "Final_Test" / "Images" / "00000.ppm").exists()
    assert (out / "GT-final_test.csv").read_text().endswith(";2\n")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [".downloads", "gtsrb"]
    assert len(list((tmp_path / "raw" / ".downloads").iterdir())) == 3


def test_fetch_real_with_bad_checksum_leaves_no_out_dir(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_gtsrb(server, _fresh(tmp_path / "zips"), monkeypatch, bad="GTSRB_Final_Test_GT.zip")
    out = tmp_path / "raw" / "gtsrb"
    with pytest.raises(UserError, match="GTSRB_Final_Test_GT.zip"):
        fetch_real("gtsrb", out, base_url=server.url)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [".downloads"]
    cached = sorted(p.name for p in (tmp_path / "raw" / ".downloads").iterdir())
    assert cached == ["GTSRB-Training_fixed.zip", "GTSRB_Final_Test_Images.zip"]  # kept for the next run


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
