"""``log_file`` rotation as Consul's ``LogFile``, on a fake clock: names with creation nanoseconds,
rotation by bytes and by duration (default 24h), ``log_rotate_max_files`` 0 / N / -1, mode 0640."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher

from wanfedtx.logfile import LogFileSettings, RotatingLogFile, split_path
from wanfedtx.logs import file_observer

T0 = 1_767_323_045.0


def clock_at(t: float = T0) -> Clock:
    c = Clock()
    c.advance(t)
    return c


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_names_carry_the_creation_time_in_nanoseconds(tmp_path: Path) -> None:
    f = RotatingLogFile(LogFileSettings(str(tmp_path) + "/"), clock_at())
    assert names(tmp_path) == [f"wanfed-{int(T0 * 1e9)}.log"]
    assert Path(f.current).name == f"wanfed-{int(T0 * 1e9)}.log"
    assert stat.S_IMODE(os.stat(f.current).st_mode) & 0o777 == 0o640 & ~_umask()
    f.close()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_name_keeps_its_extension_or_gets_dot_log(tmp_path: Path) -> None:
    assert split_path("/var/log/wanfed/") == ("/var/log/wanfed", "wanfed.log")
    assert split_path("/var/log/agent.txt") == ("/var/log", "agent.txt")
    a = RotatingLogFile(LogFileSettings(str(tmp_path / "agent.txt")), clock_at())
    b = RotatingLogFile(LogFileSettings(str(tmp_path / "plain")), clock_at(T0 + 1))
    assert names(tmp_path) == [f"agent-{int(T0 * 1e9)}.txt", f"plain-{int((T0 + 1) * 1e9)}.log"]
    a.close()
    b.close()


def test_rotates_by_bytes_before_the_write_that_follows(tmp_path: Path) -> None:
    c = clock_at()
    f = RotatingLogFile(LogFileSettings(str(tmp_path / "w.log"), rotate_bytes=10), c)
    f.write("12345")
    c.advance(1)
    f.write("67890")  # 10 bytes now: the next write rotates
    assert len(names(tmp_path)) == 1
    c.advance(1)
    f.write("x")
    f.flush()
    assert len(names(tmp_path)) == 2
    assert (tmp_path / names(tmp_path)[0]).read_text() == "1234567890"
    assert Path(f.current).read_text() == "x"
    f.close()


def test_rotates_by_duration_default_24h(tmp_path: Path) -> None:
    c = clock_at()
    f = RotatingLogFile(LogFileSettings(str(tmp_path / "w.log")), c)
    f.write("a")
    c.advance(24 * 3600 - 1)
    f.write("b")
    assert len(names(tmp_path)) == 1
    c.advance(1)
    f.write("c")
    assert len(names(tmp_path)) == 2
    f.close()


def test_rotates_by_a_given_duration(tmp_path: Path) -> None:
    c = clock_at()
    f = RotatingLogFile(LogFileSettings(str(tmp_path / "w.log"), rotate_duration=90 * 60), c)
    for _ in range(3):
        c.advance(90 * 60)
        f.write("line\n")
    assert len(names(tmp_path)) == 4  # the first file (empty) and one per 1h30m
    f.close()


@pytest.mark.parametrize(("max_files", "kept_older"), [(0, 5), (2, 2), (-1, 0)])
def test_max_files(tmp_path: Path, max_files: int, kept_older: int) -> None:
    c = clock_at()
    f = RotatingLogFile(
        LogFileSettings(str(tmp_path / "w.log"), rotate_bytes=1, rotate_max_files=max_files), c
    )
    for i in range(6):
        c.advance(1)
        f.write(str(i))  # each write after the first rotates
    f.flush()
    files = names(tmp_path)
    assert len(files) == kept_older + 1
    assert Path(f.current).name == files[-1]
    assert Path(f.current).read_text() == "5"
    if kept_older:  # the newest older files stay
        assert (tmp_path / files[-2]).read_text() == "4"
    f.close()


def test_other_files_in_the_directory_are_never_pruned(tmp_path: Path) -> None:
    (tmp_path / "other.log").write_text("keep")
    c = clock_at()
    f = RotatingLogFile(
        LogFileSettings(str(tmp_path / "w.log"), rotate_bytes=1, rotate_max_files=-1), c
    )
    for _ in range(3):
        c.advance(1)
        f.write("x")
    assert (tmp_path / "other.log").read_text() == "keep"
    assert len(names(tmp_path)) == 2
    f.close()


def test_a_missing_directory_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        RotatingLogFile(LogFileSettings(str(tmp_path / "nope" / "w.log")), clock_at())


def test_the_observer_writes_consul_lines_at_the_level(tmp_path: Path) -> None:
    c = clock_at()
    observer = file_observer(LogFileSettings(str(tmp_path) + "/"), "info", False, c)
    log = Logger(namespace="agent", observer=LogPublisher(observer))
    log.debug("hidden")
    log.info("shown: x={x}", x=1)
    [name] = names(tmp_path)
    text = (tmp_path / name).read_text()
    assert "hidden" not in text and "[INFO]  agent: shown: x=1" in text


def test_settings_from_a_runtime_config() -> None:
    class RT:
        log_file = "/tmp/x/"
        log_rotate_bytes = 5
        log_rotate_duration = 60.0
        log_rotate_max_files = -1

    assert LogFileSettings.from_runtime(RT()) == LogFileSettings("/tmp/x/", 5, 60.0, -1)
    RT.log_file = ""
    assert LogFileSettings.from_runtime(RT()) is None


def test_glob_characters_in_the_name_are_literal(tmp_path: Path) -> None:
    d = tmp_path / "a[1]"
    d.mkdir()
    (d / "w[x]-other.log").write_text("keep")
    c = clock_at()
    f = RotatingLogFile(
        LogFileSettings(str(d / "w[x].log"), rotate_bytes=1, rotate_max_files=1), c
    )
    for _ in range(3):
        c.advance(1)
        f.write("x")
    assert len([n for n in names(d) if n != "w[x]-other.log"]) == 2  # current + 1 older
    assert (d / "w[x]-other.log").read_text() == "keep"
    f.close()
