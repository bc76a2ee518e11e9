"""Files on a target: SHA-256 checksums here and there, and copying a file once (skipped
when the target already has it, resumable, verified)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import time
from pathlib import Path
from typing import Any

from meltbench.targets.base import Target, TargetError


def local_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a local file, cached on disk by (resolved path, size, mtime) under
    ``$XDG_CACHE_HOME/meltbench/sha256`` (hashing a 4 GB model takes seconds).

    Raises:
        OSError: the file cannot be read.
    """
    from meltbench.models.cache import cache_dir

    p = Path(path).resolve()
    st = p.stat()
    key = hashlib.sha256(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    cache = cache_dir() / "sha256" / f"{key}.txt"
    try:
        cached = cache.read_text().strip()
        if len(cached) == 64:
            return cached
    except OSError:
        pass
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(digest)
        tmp.replace(cache)
    except OSError:
        pass  # a read-only cache only costs time
    return digest


_SHA_PY = (
    "import hashlib, sys\n"
    "h = hashlib.sha256()\n"
    "f = open(sys.argv[1], 'rb')\n"
    "for b in iter(lambda: f.read(1 << 20), b''): h.update(b)\n"
    "print(h.hexdigest())\n"
)


def remote_sha256(target: Target, path: str, python: str | None = None) -> str | None:
    """SHA-256 of a file on the target (``sha256sum``, else ``shasum -a 256``, else Python);
    None if the file does not exist or no tool can hash it.

    Raises:
        TargetError: the target is unreachable.
    """
    commands: list[list[str]] = [["sha256sum", "--", path], ["shasum", "-a", "256", path]]
    py = python or target.python
    if py:
        commands.append([py, "-c", _SHA_PY, path])
    for argv in commands:
        done = target.run(argv, timeout=1800)
        if done.ok:
            word = (done.stdout.split() or [""])[0].lower()
            if len(word) == 64:
                return word
        if done.returncode not in (126, 127):  # the tool exists: the file does not
            return None
    return None


def _stat(target: Target, path: str) -> tuple[int, int] | None:
    """(size, mtime) of a remote file, or None."""
    stat = getattr(target, "stat", None)
    if callable(stat):
        return stat(path)
    if target.kind == "local":
        try:
            st = os.stat(path)
        except OSError:
            return None
        return int(st.st_size), int(st.st_mtime)
    done = target.run(["stat", "-c", "%s %Y", "--", path], timeout=60)
    if not done.ok:
        return None
    try:
        size, mtime = done.stdout.split()[:2]
        return int(size), int(mtime)
    except ValueError:
        return None


def _write_text(target: Target, path: str, text: str) -> None:
    writer = getattr(target, "write_text", None)
    if callable(writer):
        writer(path, text)
        return
    if target.kind == "local":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        return
    done = target.run(["sh", "-c", 'cat > "$1"', "sh", path], input=text, timeout=60)
    if not done.ok:
        raise TargetError(f"cannot write {path} on {target.url}: {done.stderr.strip()}")


def _read_json(target: Target, path: str) -> dict[str, Any] | None:
    text = target.read_file(path)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _marker(remote: str) -> str:
    return posixpath.join(posixpath.dirname(remote), f".{posixpath.basename(remote)}.sha256")


def sync_file(
    target: Target,
    local: str | os.PathLike[str],
    remote: str,
    *,
    sha256: str | None = None,
    dedupe: bool = False,
) -> dict[str, Any]:
    """Make ``remote`` a copy of ``local``, checked by SHA-256; skip what is already there.

    A verified copy gets a marker file ``.<name>.sha256`` beside it (checksum, size,
    mtime), so later calls skip it without rehashing while size and mtime are unchanged;
    otherwise an existing file of the right size is hashed on the device
    (:func:`remote_sha256`). With ``dedupe``, a verified file with the same checksum in
    the same directory is hard-linked (``ln -f``) instead of pushed again.

    Returns:
        ``{"remote", "sha256", "size_bytes", "action": "present"|"pushed"|"linked",
        "seconds"}``.

    Raises:
        TargetError: the push failed, or the pushed file's checksum differs.
    """
    t0 = time.monotonic()
    local = str(local)
    size = os.path.getsize(local)
    want = sha256 or local_sha256(local)
    marker = _marker(remote)
    out = {"remote": remote, "sha256": want, "size_bytes": size}

    def done(action: str) -> dict[str, Any]:
        return {**out, "action": action, "seconds": round(time.monotonic() - t0, 3)}

    def record() -> None:
        st = _stat(target, remote)
        data = {"sha256": want, "size": st[0] if st else size, "mtime": st[1] if st else None}
        _write_text(target, marker, json.dumps(data))

    st = _stat(target, remote)
    if st is not None and st[0] == size:
        mark = _read_json(target, marker)
        if (
            mark
            and mark.get("sha256") == want
            and [mark.get("size"), mark.get("mtime")]
            == [
                st[0],
                st[1],
            ]
        ):
            return done("present")
        if remote_sha256(target, remote) == want:
            record()
            return done("present")
    if dedupe:
        folder = posixpath.dirname(remote)
        listing = target.run(["ls", "-a", "--", folder], timeout=60)
        for name in listing.stdout.splitlines() if listing.ok else []:
            if not (name.startswith(".") and name.endswith(".sha256")):
                continue
            other = posixpath.join(folder, name[1 : -len(".sha256")])
            mark = _read_json(target, posixpath.join(folder, name))
            other_st = _stat(target, other) if mark else None
            if (
                mark
                and other != remote
                and mark.get("sha256") == want
                and other_st == (mark.get("size"), mark.get("mtime"))
            ):
                linked = target.run(["ln", "-f", "--", other, remote], timeout=120)
                if linked.ok:
                    record()
                    return done("linked")
    target.push(local, remote)
    got = remote_sha256(target, remote)
    if got is not None and got != want:
        raise TargetError(
            f"checksum of {remote} on {target.url} is {got[:12]}..., expected {want[:12]}...: "
            "the copy was corrupted; run again"
        )
    record()
    return done("pushed")
