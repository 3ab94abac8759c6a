"""Checksummed, resumable downloads and archive extraction that cannot write outside its target.

``download`` streams a URL to ``<dest>.part``, resumes an interrupted ``.part`` with an HTTP
``Range`` request, checks the md5 and only then renames the file to ``dest``: a file at ``dest``
is always complete. ``safe_extract`` checks every member of a zip, tar or rar archive before
anything is written, extracts into a staging directory and moves the result into place only when
all of it succeeded.

Only ``https`` URLs are fetched (redirects included); plain ``http`` is allowed to loopback hosts
so that the tests can run against a local server.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from attnrobust.errors import UserError
from attnrobust.runtime import show_progress

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# PEP 706 extraction filters arrived in 3.11.4; on older Pythons our own member checks guard alone.
_TAR_FILTER_ERROR = getattr(tarfile, "FilterError", ())


class _Incomplete(ConnectionError):
    """The server closed the connection before the whole file arrived; worth a retry."""


# --------------------------------------------------------------------------- download


def check_url(url: str, allow_http_hosts: Iterable[str] = LOOPBACK_HOSTS) -> None:
    """Raise ``UserError`` unless ``url`` is https, or plain http to one of ``allow_http_hosts``."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in tuple(allow_http_hosts):
        return
    raise UserError(
        f"refusing to download {url!r}: only https URLs are allowed "
        f"(plain http only to the loopback test hosts {tuple(allow_http_hosts)}); "
        "use the https address of the official source"
    )


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in ``chunk``-byte blocks."""
    digest = hashlib.md5()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    dest: Path,
    md5: str | None,
    *,
    allow_http_hosts: tuple[str, ...] = LOOPBACK_HOSTS,
    chunk: int = 1 << 20,
    timeout: float = 60,
    retries: int = 3,
    retry_wait: float = 2.0,
) -> Path:
    """Download ``url`` to ``dest`` (verified against ``md5`` when given) and return ``dest``.

    Skips the download when ``dest`` already holds the right file. Data goes to
    ``dest.part`` first; an existing ``.part`` is resumed with a ``Range`` request (a server that
    ignores the range and answers 200 makes it start over). Connection errors are retried
    ``retries`` times, each retry resuming, waiting ``retry_wait`` s longer each time. On an md5
    mismatch the downloaded file is deleted and ``UserError`` names file, expected and actual.
    """
    check_url(url, allow_http_hosts)
    dest = Path(dest)
    if _already_there(dest, md5, chunk):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    opener = urllib.request.build_opener(_HttpsOnlyRedirects(allow_http_hosts))
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            _fetch_once(opener, url, part, chunk=chunk, timeout=timeout)
            break
        except urllib.error.HTTPError as err:
            if err.code not in RETRYABLE_HTTP:
                raise UserError(
                    f"downloading {url} failed: HTTP {err.code} {err.reason}; "
                    "check that the URL is still the official one (attnrobust/data/sources.py)"
                ) from err
            last_error = err
        except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as err:
            last_error = err
        if attempt < retries:
            time.sleep(retry_wait * (attempt + 1))
    else:
        raise UserError(
            f"could not download {url} after {retries + 1} attempts ({last_error!r}); "
            f"any partial download is kept in {part}: run the stage again to resume, or delete it to start over"
        )
    _verify(part, dest, md5, chunk)
    part.replace(dest)
    return dest


def _already_there(dest: Path, md5: str | None, chunk: int) -> bool:
    """True if ``dest`` exists and matches ``md5``; a mismatching ``dest`` is deleted."""
    if not dest.is_file():
        return False
    if md5 is None or md5sum(dest, chunk) == md5:
        return True
    dest.unlink()  # stale or corrupt: fetch it again
    return False


def _verify(part: Path, dest: Path, md5: str | None, chunk: int) -> None:
    """Check ``part`` against ``md5``; on a mismatch delete it and raise ``UserError``."""
    if md5 is None:
        return
    actual = md5sum(part, chunk)
    if actual != md5:
        part.unlink()
        raise UserError(
            f"checksum mismatch for {dest.name}: expected md5 {md5}, got {actual}; "
            "the download was deleted. Run the stage again to fetch it afresh; if it fails again, "
            "the file on the server has changed: compare with the official source before trusting it"
        )


def _fetch_once(
    opener: urllib.request.OpenerDirector, url: str, part: Path, *, chunk: int, timeout: float
) -> None:
    """One attempt: append to (or restart) ``part``; raise ``_Incomplete`` if the body is cut short."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: .part may already be complete
            if _content_range(err.headers.get("Content-Range"))[1] == offset:
                return
            part.unlink()
            raise _Incomplete("server refused to resume; starting over") from err
        raise
    with response:
        start, total = _resume_point(response, offset, part)
        with part.open("ab" if start else "wb") as f, _progress(total, start, part.name) as bar:
            while block := response.read(chunk):
                f.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Incomplete(f"connection closed after {size} of {total} bytes")


def _resume_point(response: http.client.HTTPResponse, offset: int, part: Path) -> tuple[int, int | None]:
    """(byte position the body starts at, expected final size or None) for a 200 or 206 reply."""
    length = response.headers.get("Content-Length")
    if response.status != 206:  # 200: the server ignored the range, so the body is the whole file
        return 0, int(length) if length else None
    start, total = _content_range(response.headers.get("Content-Range"))
    if start != offset:
        part.unlink()
        raise _Incomplete(f"server resumed at byte {start}, not {offset}; starting over")
    if total is None and length:
        total = offset + int(length)
    return start, total


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """Parse ``bytes a-b/total`` or ``bytes */total`` into (a, total); unknown parts are None."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[len("bytes "):].partition("/")
    start = span.split("-")[0]
    return (int(start) if start.isdigit() else None), (int(total) if total.isdigit() else None)


def _progress(total: int | None, initial: int, name: str) -> tqdm:
    """Byte progress bar on stderr, shown only when stderr is a terminal (never in logs or tests)."""
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name, disable=not show_progress())


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to URLs that ``check_url`` accepts (no https → http downgrade)."""

    def __init__(self, allow_http_hosts: Iterable[str]) -> None:
        super().__init__()
        self.allow_http_hosts = tuple(allow_http_hosts)

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        check_url(newurl, self.allow_http_hosts)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# --------------------------------------------------------------------------- extraction


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a .zip, .tar(.gz/.bz2/.xz) or .rar ``archive`` into ``dest`` (created or merged into).

    Refuses with ``UserError`` (naming the member) any absolute member path, any path that
    ``..`` takes outside ``dest``, any path through a link member, and any symlink or hardlink
    pointing outside ``dest``. Nothing reaches ``dest`` unless the whole archive extracted.
    """
    archive, dest = Path(archive), Path(dest)
    extract = _extractor(archive)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        extract(archive, staging)
        if os.path.lexists(dest):
            _merge_tree(staging, dest)
        else:
            staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extractor(archive: Path) -> Callable[[Path, Path], None]:
    """The extraction function for ``archive``'s suffix."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        return _extract_zip
    if name.endswith(TAR_SUFFIXES):
        return _extract_tar
    if name.endswith(".rar"):
        return _extract_rar
    raise UserError(f"{archive}: unknown archive type (expected .zip, .tar[.gz|.bz2|.xz] or .rar)")


def _extract_zip(archive: Path, staging: Path) -> None:
    """Check every zip member, then extract. (zipfile writes symlink entries as plain files.)"""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            _check_paths(archive, names, links=set())
            zf.extractall(staging)
    except zipfile.BadZipFile as err:
        raise _corrupt(archive, err) from err


def _extract_tar(archive: Path, staging: Path) -> None:
    """Check every tar member (paths, link targets, file types), then extract with ``filter='data'``."""
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _check_tar_members(archive, members)
            if hasattr(tarfile, "data_filter"):
                tf.extractall(staging, filter="data")
            else:  # Python without PEP 706 filters: our own checks above are the guard
                tf.extractall(staging)
    except _TAR_FILTER_ERROR as err:
        raise UserError(f"{archive}: unsafe member refused by tarfile: {err}") from err
    except (tarfile.ReadError, EOFError) as err:
        raise _corrupt(archive, err) from err


def _check_tar_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Refuse special files, escaping paths and links whose target leaves the archive root."""
    links = {_normalise(m.name) for m in members if m.issym() or m.islnk()}
    _check_paths(archive, [m.name for m in members], links)
    for m in members:
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise UserError(f"{archive}: member {m.name!r} is a device or fifo; refusing to extract")
        if m.issym() or m.islnk():
            base = posixpath.dirname(_normalise(m.name)) if m.issym() else ""
            if posixpath.isabs(m.linkname) or _escapes(posixpath.join(base, m.linkname)):
                raise UserError(
                    f"{archive}: link member {m.name!r} points outside the target ({m.linkname!r}); "
                    "refusing to extract this archive"
                )


def _check_paths(archive: Path, names: list[str], links: set[str]) -> None:
    """Refuse absolute names, names that ``..`` takes outside the root, and names inside a link."""
    for name in names:
        unix = name.replace("\\", "/")
        if unix.startswith("/") or (len(unix) > 1 and unix[0].isalpha() and unix[1] == ":"):
            raise UserError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
        if _escapes(unix):
            raise UserError(f"{archive}: member {name!r} escapes the target with '..'; refusing to extract")
        parts = [p for p in unix.split("/") if p]
        for i in range(1, len(parts)):
            if _normalise("/".join(parts[:i])) in links:
                raise UserError(f"{archive}: member {name!r} lies inside a link member; refusing to extract")


def _normalise(name: str) -> str:
    """Archive-relative, normalised posix path ('' for the root)."""
    norm = posixpath.normpath(name.replace("\\", "/"))
    return "" if norm == "." else norm


def _escapes(relative: str) -> bool:
    """True if the relative posix path leaves its root once normalised."""
    norm = _normalise(relative)
    return norm == ".." or norm.startswith("../")


def _extract_rar(archive: Path, staging: Path) -> None:
    """Extract a .rar with ``unar`` or ``unrar`` (the stdlib cannot), then check for escaping links."""
    if tool := shutil.which("unar"):
        cmd = [tool, "-quiet", "-no-directory", "-force-overwrite",
               "-output-directory", str(staging), str(archive)]
    elif tool := shutil.which("unrar"):
        cmd = [tool, "x", "-idq", "-o+", "-p-", str(archive), f"{staging}{os.sep}"]
    else:
        raise UserError(
            f"{archive}: .rar archives need an external extractor; install one "
            "(Debian/Ubuntu: `sudo apt-get install unar`, or `unrar` from non-free) and run the stage again"
        )
    # stdin closed: an encrypted archive must fail, not hang on a password prompt
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = result.stderr.strip()[-500:]
        raise UserError(f"{archive}: {Path(tool).name} failed with exit code {result.returncode}: {detail}")
    _check_extracted_links(archive, staging)


def _check_extracted_links(archive: Path, root: Path) -> None:
    """Refuse symlinks under ``root`` whose target resolves outside it (for external extractors)."""
    real_root = root.resolve()
    for path in root.rglob("*"):
        if path.is_symlink() and not path.resolve().is_relative_to(real_root):
            raise UserError(f"{archive}: member {path.relative_to(root)} links outside the target; refusing")


def _merge_tree(src: Path, dst: Path) -> None:
    """Move everything in ``src`` into ``dst``, descending into directories both sides have."""
    for child in src.iterdir():
        target = dst / child.name
        if _is_real_dir(child) and _is_real_dir(target):
            _merge_tree(child, target)
        elif os.path.lexists(target) and _is_real_dir(child) != _is_real_dir(target):
            raise UserError(f"cannot extract {child.name!r}: {target} exists as the other of file/directory")
        else:
            os.replace(child, target)


def _is_real_dir(path: Path) -> bool:
    """A directory that is not a symlink to one."""
    return path.is_dir() and not path.is_symlink()


def _corrupt(archive: Path, err: Exception) -> UserError:
    """The error for an archive that cannot be read."""
    return UserError(
        f"{archive} is not a readable archive ({err}); delete it and run the stage again to re-download"
    )
