"""edudiff.data.archives: crafted malicious tar files are refused on both code paths -- with PEP 706's
``filter="data"`` where this Python has it, and without it (forced here by patching
``HAS_DATA_FILTER``, as on Debian 12's Python 3.11.2). Independent check: the file system after the
attempt. ``test_data_filter_alone_catches_what_the_checks_would`` shows the filter line works by itself."""

from __future__ import annotations

import io
import tarfile

import pytest

from edudiff.data import archives

PATHS = [pytest.param(True, id="data-filter"), pytest.param(False, id="fallback-checks")]


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _archive(path, *members) -> None:
    with tarfile.open(path, "w") as tar:
        tar.addfile(*_member("ok/first.txt", tarfile.REGTYPE, b"fine"))  # a good member first: nothing may be written
        for spec in members:
            tar.addfile(*_member(*spec))


@pytest.fixture(params=PATHS)
def extraction_path(request, monkeypatch):
    if request.param and not archives.HAS_DATA_FILTER:
        pytest.skip("this Python's tarfile has no extraction filters (the fallback case covers it)")
    monkeypatch.setattr(archives, "HAS_DATA_FILTER", request.param)
    return request.param


# Each case: members as (name, type, data, linkname) for _member; the first one is the offender.
EVIL = {
    "absolute-path": [("/tmp/edudiff-absolute-evil.txt", tarfile.REGTYPE, b"x")],
    "dotdot": [("ok/../../escaped.txt", tarfile.REGTYPE, b"x")],
    "symlink-absolute": [("ok/passwd", tarfile.SYMTYPE, b"", "/etc/passwd")],
    "symlink-outside": [("ok/up", tarfile.SYMTYPE, b"", "../../outside")],
    "symlink-then-write-through": [
        ("ok/up", tarfile.SYMTYPE, b"", "../.."),
        ("ok/up/escaped.txt", tarfile.REGTYPE, b"x"),
    ],
    "hardlink-outside": [("ok/hard", tarfile.LNKTYPE, b"", "../escaped.txt")],
    "char-device": [("ok/null", tarfile.CHRTYPE)],
    "block-device": [("ok/disk", tarfile.BLKTYPE)],
    "fifo": [("ok/pipe", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", sorted(EVIL))
def test_malicious_member_is_refused_and_named(tmp_path, extraction_path, case):
    archive = tmp_path / "evil.tar"
    _archive(archive, *EVIL[case])
    dest = tmp_path / "box" / "dest"
    dest.mkdir(parents=True)
    bad_name = EVIL[case][0][0]  # the first offending member
    with pytest.raises(archives.UnsafeArchiveError) as err:
        archives.safe_extractall(archive, dest)
    message = str(err.value)
    assert repr(bad_name) in message and str(archive) in message and "download it again" in message
    outside = [
        p
        for p in tmp_path.rglob("*")
        if p != archive and not p.is_relative_to(dest) and p not in (tmp_path / "box", dest)
    ]
    assert outside == [], f"files written outside the destination: {outside}"
    assert list(dest.iterdir()) == []  # every member is checked before anything is written


def test_no_absolute_member_reached_tmp(tmp_path):
    assert not (tmp_path.parent / "edudiff-absolute-evil.txt").exists()
    import pathlib

    assert not pathlib.Path("/tmp/edudiff-absolute-evil.txt").exists()


def test_benign_archive_with_internal_links_extracts_the_same_on_both_paths(tmp_path, monkeypatch):
    archive = tmp_path / "good.tar"
    _archive(
        archive,
        ("ok/sub/data.bin", tarfile.REGTYPE, b"\x00\x01\x02"),
        ("ok/alias", tarfile.SYMTYPE, b"", "sub/data.bin"),
        ("ok/hard", tarfile.LNKTYPE, b"", "ok/first.txt"),
        ("ok/dir", tarfile.DIRTYPE),
    )
    results = {}
    for has_filter in [True, False] if archives.HAS_DATA_FILTER else [False]:
        monkeypatch.setattr(archives, "HAS_DATA_FILTER", has_filter)
        dest = tmp_path / f"dest-{has_filter}"
        names = archives.safe_extractall(archive, dest)
        assert names == ["ok/first.txt", "ok/sub/data.bin", "ok/alias", "ok/hard", "ok/dir"]
        assert (dest / "ok/alias").is_symlink() and (dest / "ok/alias").read_bytes() == b"\x00\x01\x02"
        assert (dest / "ok/hard").read_bytes() == b"fine" and (dest / "ok/dir").is_dir()
        results[has_filter] = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert len(set(map(tuple, results.values()))) == 1


@pytest.mark.parametrize(
    "reason_case, member, reason",
    [
        ("absolute", _member("/etc/x")[0], "absolute path"),
        ("dotdot", _member("a/../../x")[0], "leaves the destination"),
        ("fifo", _member("p", tarfile.FIFOTYPE)[0], "special file"),
        ("link", _member("l", tarfile.SYMTYPE, linkname="/")[0], "absolute path"),
        ("fine", _member("a/b.txt")[0], None),
        ("fine-link", _member("a/l", tarfile.SYMTYPE, linkname="../b")[0], None),
    ],
)
def test_check_member_reasons(tmp_path, reason_case, member, reason):
    got = archives.check_member(member, tmp_path)
    assert (got is None) if reason is None else (reason in got), (reason_case, got)


def test_feature_detection_matches_tarfile():
    # "don't compare version numbers": the flag is whatever tarfile actually offers
    assert hasattr(tarfile, "data_filter") == archives.HAS_DATA_FILTER


@pytest.mark.skipif(not archives.HAS_DATA_FILTER, reason="this Python's tarfile has no extraction filters")
@pytest.mark.parametrize("case", ["dotdot", "symlink-absolute", "hardlink-outside", "char-device", "fifo"])
def test_data_filter_alone_catches_what_the_checks_would(tmp_path, monkeypatch, case):
    """The second line of defence on its own: with the member checks disabled, the filter refuses too."""
    monkeypatch.setattr(archives, "check_member", lambda member, dest: None)
    monkeypatch.setattr(archives, "HAS_DATA_FILTER", True)
    archive = tmp_path / "evil.tar"
    _archive(archive, *EVIL[case])
    with pytest.raises(archives.UnsafeArchiveError, match=repr(EVIL[case][0][0])):
        archives.safe_extractall(archive, tmp_path / "dest")


def test_checks_are_what_refuse_on_the_fallback_path(tmp_path, monkeypatch):
    """Without the checks and without the filter an escaping member gets out: the checks matter."""
    monkeypatch.setattr(archives, "check_member", lambda member, dest: None)
    monkeypatch.setattr(archives, "HAS_DATA_FILTER", False)
    archive = tmp_path / "evil.tar"
    _archive(archive, *EVIL["dotdot"])
    (tmp_path / "box" / "dest").mkdir(parents=True)
    archives.safe_extractall(archive, tmp_path / "box" / "dest")
    assert (tmp_path / "box" / "escaped.txt").read_bytes() == b"x"
