"""Safe extraction of tar archives (the CIFAR-10 download), on every Python the course supports.

A tar member can name any path: ``/etc/passwd``, ``../../.bashrc``, a symlink to ``/`` followed by
a file "inside" it, a device node. Extracting such an archive as it is can write anywhere the user
can. Python's ``tarfile`` guards against this with ``extractall(..., filter="data")`` (PEP 706), but
only from Python 3.12, 3.11.4 and 3.10.12 -- Debian 12's Python 3.11.2 does not have it. So:

* every member is checked first, by the rules of that filter that matter for safety: no absolute
  path, no path that leaves the destination (``..``), no symbolic or hard link whose target is
  absolute or resolves outside the destination, no device, FIFO or other special file. One bad
  member refuses the whole archive *before anything is written* -- on every Python, so the same
  archives are refused everywhere (the filter alone would strip a leading ``/`` and extract);
* where ``tarfile`` has the ``"data"`` filter (detected with ``hasattr(tarfile, "data_filter")``,
  never by version number), extraction then goes through it as well; elsewhere the checked members
  are extracted without restoring owners or permission bits.

Either way a refused member raises :class:`UnsafeArchiveError`, which names the archive, the member
and the fix.

Taught in: nowhere (plumbing for :mod:`edudiff.data`'s CIFAR-10 download).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

__all__ = ["HAS_DATA_FILTER", "UnsafeArchiveError", "check_member", "safe_extractall"]

#: Whether this Python's tarfile has PEP 706's extraction filters (``filter="data"``).
HAS_DATA_FILTER: bool = hasattr(tarfile, "data_filter")


class UnsafeArchiveError(ValueError):
    """A tar member would be written outside the destination, or is a link/device/FIFO we refuse."""


def _inside(dest: Path, path: str) -> bool:
    """Whether ``path`` (relative to ``dest``, already joined by the caller) stays inside ``dest``."""
    real_dest = os.path.realpath(dest)
    return os.path.commonpath([real_dest, os.path.realpath(path)]) == real_dest


def check_member(member: tarfile.TarInfo, dest: str | os.PathLike) -> str | None:
    """Why ``member`` is unsafe to extract into ``dest`` (a short reason), or None if it is safe.

    The rules of ``filter="data"`` that protect the file system: regular files, directories and links
    only; no absolute name; the name must stay inside ``dest``; a symlink's target is resolved from
    the member's folder and a hard link's from ``dest``, and both must stay inside ``dest`` (and not be
    absolute).
    """
    dest = Path(dest)
    name = member.name
    if name.startswith(("/", os.sep)) or os.path.isabs(name):
        return "absolute path"
    target_path = os.path.join(dest, name)
    if not _inside(dest, target_path):
        return "path leaves the destination"
    if member.isdev() or member.isfifo() or not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "special file (device, FIFO or unknown type)"
    if member.issym() or member.islnk():
        link = member.linkname
        if link.startswith(("/", os.sep)) or os.path.isabs(link):
            return f"link to an absolute path ({link!r})"
        base = os.path.dirname(target_path) if member.issym() else str(dest)
        if not _inside(dest, os.path.join(base, link)):
            return f"link target {link!r} leaves the destination"
    return None


def safe_extractall(archive: str | os.PathLike, dest: str | os.PathLike, mode: str = "r:*") -> list[str]:
    """Extract every member of the tar file ``archive`` into the folder ``dest`` safely.

    Checks all members with :func:`check_member` before writing anything, then extracts with
    ``filter="data"`` where available (:data:`HAS_DATA_FILTER`), else without restoring owners or
    permission bits. Returns the member names. Raises :class:`UnsafeArchiveError` naming the member
    for anything unsafe; ``tarfile.TarError`` for a corrupted archive.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode) as tar:
        members = tar.getmembers()
        for member in members:  # on every Python, so that both paths refuse the same archives
            reason = check_member(member, dest)
            if reason is not None:
                raise UnsafeArchiveError(_message(archive, member.name, reason))
        if HAS_DATA_FILTER:  # and PEP 706's filter as a second line (it also drops set-uid bits)
            try:
                tar.extractall(dest, members=members, filter="data")
            except tarfile.FilterError as err:  # names the member, e.g. "'../x' would be extracted to ..."
                member = getattr(err, "tarinfo", None)
                raise UnsafeArchiveError(_message(archive, member.name if member else "?", str(err))) from err
        else:
            # Checked above. Where tarfile does have filters (a test forcing this path), say so explicitly
            # rather than trigger the "no filter given" deprecation warning of Python 3.12+.
            trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
            for member in members:
                tar.extract(member, dest, set_attrs=False, **trusted)
    return [m.name for m in members]


def _message(archive, member: str, reason: str) -> str:
    return (
        f"{archive}: refused to extract member {member!r} ({reason}). The archive is not the canonical "
        f"file or has been tampered with: delete it and download it again (download=True), or get it "
        f"from the dataset's official site and check its md5."
    )
