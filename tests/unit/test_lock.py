"""The locks `make build` installs from (requirements/fc{2,3}-{mysql,postgresql}.lock, written by `make lock`,
local/lock.py) agree with pyproject.toml: every runtime requirement of the flavour is pinned, within its specifier,
with a sha256; each flavour carries its own FC SDK and database driver only; and a lock that disagrees is refused
with the fix named. No network: the resolution itself is exercised with pip's report stubbed."""

from __future__ import annotations

import pytest

from local import lock as locking
from local.build import BuildError, runtime_requirements
from local.lock import (
    FLAVOURS,
    LockError,
    Pin,
    check_lock,
    lock_path,
    lock_problems,
    main,
    read_lock,
    render_lock,
    resolve,
)

IDS = [f"fc{fc}-{db}" for fc, db in FLAVOURS]


def header_requirements(fc: str, db: str) -> list[str]:
    lines = lock_path(db, fc).read_text().splitlines()
    start = lines.index("# do not edit, rerun `make lock`. Requirements:") + 1
    found = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        found.append(line[4:])
    return found


@pytest.mark.parametrize(("fc", "db"), FLAVOURS, ids=IDS)
def test_each_lock_agrees_with_pyproject(fc, db):
    requirements = runtime_requirements(db, fc)
    pins = read_lock(check_lock(db, fc))
    assert lock_problems(pins, requirements) == []
    assert header_requirements(fc, db) == requirements  # resolved from pyproject.toml as it is now
    assert all(len(digest) == 64 for pin in pins.values() for digest in pin.hashes)


@pytest.mark.parametrize(("fc", "db"), FLAVOURS, ids=IDS)
def test_each_flavour_carries_its_fc_sdk_and_database_driver_only(fc, db):
    pins = read_lock(lock_path(db, fc))
    if fc == "2":
        assert pins["aliyun-fc2"].source and "alibabacloud-fc20230330" not in pins
        assert {"requests", "websocket-client"} <= set(pins)  # aliyun-fc2's, installed without its dependencies
    else:
        assert "aliyun-fc2" not in pins and "alibabacloud-fc20230330" in pins
        assert not any(pin.source for pin in pins.values())
        # aiohttp needs async-timeout below Python 3.11 only: the lock was resolved for FC's 3.10
        assert "async-timeout" in pins
    drivers = {"pymysql", "psycopg", "psycopg-binary"} & set(pins)
    assert drivers == ({"pymysql"} if db == "mysql" else {"psycopg", "psycopg-binary"})
    for cli_only in ("typer", "click", "rich"):
        assert cli_only not in pins


def test_the_check_command_agrees(capsys):
    assert main(["--check"]) == 0
    assert "agree with pyproject.toml" in capsys.readouterr().out


def pins(**versions: str) -> dict[str, Pin]:
    return {name: Pin(name, version, ("0" * 64,)) for name, version in versions.items()}


def test_a_requirement_missing_from_the_lock_is_a_problem():
    problems = lock_problems(pins(pydantic="2.14.4"), ["pydantic>=2.7", "tzdata"])
    assert problems == ["tzdata is not in the lock"]


def test_a_pin_outside_the_specifier_is_a_problem():
    problems = lock_problems(pins(sqlalchemy="2.1.0"), ["sqlalchemy<2.1,>=2.0.30"])
    assert problems == ["sqlalchemy<2.1,>=2.0.30: the lock pins sqlalchemy==2.1.0"]
    assert lock_problems(pins(**{"aliyun-fc2": "2.5.1"}), ["aliyun-fc2==2.5.2"]) == [
        "aliyun-fc2==2.5.2: the lock pins aliyun-fc2==2.5.1"
    ]


def test_a_pin_without_a_hash_is_a_problem():
    assert lock_problems({"tzdata": Pin("tzdata", "2026.6", ())}, ["tzdata"]) == ["tzdata==2026.6 has no sha256"]


def test_names_are_compared_normalised():
    assert lock_problems(pins(**{"psycopg-binary": "3.3.9", "psycopg": "3.3.9"}), ["psycopg[binary]>=3.1"]) == []
    assert lock_problems(pins(**{"alibabacloud-fc20230330": "4.8.3"}), ["alibabacloud_fc20230330>=4.8"]) == []


def test_a_lock_that_disagrees_is_refused_with_the_fix(tmp_path):
    text = lock_path("mysql", "2").read_text()
    start = text.index("pymysql==")
    end = text.index("\n", text.index("--hash", start)) + 1
    (tmp_path / "fc2-mysql.lock").write_text(text[:start] + text[end:])
    with pytest.raises(
        LockError, match=r"(?s)fc2-mysql\.lock does not agree .*run `make lock`.*\n  pymysql>=1\.1 is not in the lock"
    ):
        check_lock("mysql", "2", tmp_path)
    with pytest.raises(LockError, match=r"fc3-mysql\.lock is missing: run `make lock`"):
        check_lock("mysql", "3", tmp_path)
    assert issubclass(LockError, BuildError)  # `make build` reports it as a build failure


def test_a_lock_reads_back_as_it_was_written(tmp_path):
    written = [
        Pin("aliyun-fc2", "2.5.2", ("a" * 64,), source=True),
        Pin("tzdata", "2026.6", ("b" * 64, "c" * 64)),
    ]
    text = render_lock("2", "mysql", ["aliyun-fc2==2.5.2", "tzdata"], written, {"pycparser": "3.12"})
    (tmp_path / "x.lock").write_text(text)
    assert read_lock(tmp_path / "x.lock") == {pin.name: pin for pin in written}
    assert "# not as tested: pycparser (the tests ran 3.12)" in text


def report(name: str, version: str, digest: str = "d" * 64) -> dict:
    return {
        "metadata": {"name": name, "version": version},
        "download_info": {"url": f"https://files/{name}-{version}.whl", "archive_info": {"hashes": {"sha256": digest}}},
    }


def test_resolution_drops_a_tested_version_python_310_cannot_have(monkeypatch):
    calls = []

    def dry_run(arguments, constraints, python):
        pinned = constraints.read_text()
        calls.append((arguments, pinned))
        if "pycparser==3.12" in pinned:
            raise locking._Refused(
                type("Done", (), {"stdout": "The user requested (constraint) pycparser==3.12\n", "stderr": ""})()
            )
        if "--no-deps" in arguments:
            return [report("aliyun-fc2", "2.5.2")]
        return [report("cffi", "2.1.1"), report("pycparser", "2.23")]

    monkeypatch.setattr(locking, "_dry_run", dry_run)
    monkeypatch.setattr(locking, "resolver_python", lambda: "python3.10")
    found, unpinnable = resolve(["cffi", "aliyun-fc2==2.5.2"], {"cffi": "2.1.1", "pycparser": "3.12"})
    assert unpinnable == {"pycparser": "3.12"}
    assert [(p.name, p.version, p.source) for p in found] == [
        ("aliyun-fc2", "2.5.2", True),
        ("cffi", "2.1.1", False),
        ("pycparser", "2.23", False),
    ]
    wheels = calls[-2][0]
    assert "--only-binary=:all:" in wheels and "manylinux_2_28_x86_64" in wheels and "requests" in wheels
    assert "aliyun-fc2==2.5.2" not in wheels  # the sdist is resolved apart, without its dependencies


def test_a_file_without_a_sha256_in_the_report_is_refused(monkeypatch):
    bare = report("tzdata", "2026.6")
    bare["download_info"]["archive_info"] = {}
    monkeypatch.setattr(locking, "_dry_run", lambda arguments, constraints, python: [bare])
    monkeypatch.setattr(locking, "resolver_python", lambda: "python3.10")
    with pytest.raises(LockError, match=r"no sha256 for tzdata 2026\.6"):
        resolve(["tzdata"], {})


def test_locking_needs_a_python_310(monkeypatch):
    monkeypatch.setattr(locking, "find_python310", lambda: None)
    with pytest.raises(LockError, match=r"make lock needs a Python 3\.10"):
        locking.resolver_python()
