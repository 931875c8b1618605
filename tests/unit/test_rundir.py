"""RunDir: where a run dir's files and sockets are, and the check that keeps
another local user out of the socket directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipc import ConfigError
from orchestrator._rundir import RunDir

NOBODY = 65534


@pytest.fixture
def tmp_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private stand-in for /tmp: the socket dir of a long run dir goes here."""
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="zsb"))
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def long_run_dir(base: Path) -> RunDir:
    rd = RunDir(base / ("r" * 120))
    assert rd.socket_dir != rd.path  # too long for sun_path: sockets go elsewhere
    return rd


def test_short_run_dir_keeps_its_sockets(tmp_base: Path) -> None:
    rd = RunDir(tmp_base / "run")
    assert rd.socket_dir == rd.path
    assert rd.endpoints.control == f"ipc://{rd.path}/control.sock"
    assert rd.skill_log("echo") == rd.path / "logs" / "echo.log"
    assert rd.pid_file == rd.path / "zskilld.pid"


def test_long_run_dir_gets_a_private_socket_dir(tmp_base: Path) -> None:
    rd = long_run_dir(tmp_base)
    sdir = rd.make_private()
    assert sdir == rd.socket_dir
    assert sdir.parent == tmp_base / f"zskill-{os.getuid()}"
    for d in (sdir.parent, sdir):
        assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o700
    rd.check_sockets_private()
    assert len(rd.endpoints.workers.removeprefix("ipc://")) <= 107


def test_a_missing_socket_dir_is_no_error_for_a_client(tmp_base: Path) -> None:
    rd = long_run_dir(tmp_base)
    rd.check_sockets_private()
    assert not rd.socket_dir.parent.exists()  # a client creates nothing


@pytest.mark.skipif(os.getuid() != 0, reason="making a directory another user owns needs root")
def test_a_base_dir_owned_by_another_user_is_refused(tmp_base: Path) -> None:
    rd = long_run_dir(tmp_base)
    base = rd.socket_dir.parent
    base.mkdir(mode=0o777)
    os.chmod(base, 0o777)
    os.chown(base, NOBODY, NOBODY)
    for check in (rd.make_private, rd.check_sockets_private):
        with pytest.raises(ConfigError, match=r"belongs to uid 65534") as info:
            check()
        assert str(base) in info.value.message
    assert not rd.socket_dir.exists()  # nothing was made inside it


@pytest.mark.skipif(os.getuid() != 0, reason="making a directory another user owns needs root")
def test_a_hash_dir_owned_by_another_user_is_refused(tmp_base: Path) -> None:
    rd = long_run_dir(tmp_base)
    rd.socket_dir.parent.mkdir(mode=0o700)
    rd.socket_dir.mkdir(mode=0o700)
    os.chown(rd.socket_dir, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        rd.make_private()


def test_a_symlink_is_refused(tmp_base: Path) -> None:
    rd = long_run_dir(tmp_base)
    elsewhere = tmp_base / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    rd.socket_dir.parent.symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symbolic link"):
        rd.make_private()
    with pytest.raises(ConfigError, match="symbolic link"):
        rd.check_sockets_private()


def test_an_open_dir_of_ours_is_refused_by_a_client_and_closed_by_the_daemon(
    tmp_base: Path,
) -> None:
    rd = long_run_dir(tmp_base)
    rd.socket_dir.parent.mkdir()
    os.chmod(rd.socket_dir.parent, 0o755)
    rd.check_sockets_private()  # others may look, not write: nothing to swap in
    os.chmod(rd.socket_dir.parent, 0o777)
    with pytest.raises(ConfigError, match="mode 0777"):
        rd.check_sockets_private()
    rd.make_private()
    assert (rd.socket_dir.parent.stat().st_mode & 0o777) == 0o700
    rd.check_sockets_private()


def test_a_file_in_place_of_the_dir_is_refused(tmp_base: Path) -> None:
    rd = long_run_dir(tmp_base)
    rd.socket_dir.parent.write_text("not a directory")
    with pytest.raises(ConfigError, match="not a directory"):
        rd.make_private()


def test_a_run_dir_that_is_a_file_or_another_users_is_refused(tmp_base: Path) -> None:
    afile = tmp_base / "run"
    afile.write_text("")
    with pytest.raises(
        ConfigError, match=r"cannot use .*run as the run dir: it is not a directory"
    ):
        RunDir(afile).make_private()
    if os.getuid() == 0:
        theirs = tmp_base / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, NOBODY, NOBODY)
        with pytest.raises(ConfigError, match="belongs to uid 65534"):
            RunDir(theirs).make_private()


def test_the_daemon_makes_a_short_run_dir_private(tmp_base: Path) -> None:
    rd = RunDir(tmp_base / "a" / "run")
    assert rd.make_private() == rd.path
    assert (rd.path.stat().st_mode & 0o777) == 0o700
