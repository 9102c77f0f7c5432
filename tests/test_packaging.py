"""Packaging: the built wheel's metadata (core dependencies only, extras, LICENSE, URLs, one version), the
vectors it ships, an install into a fresh virtual environment, and the one-line error naming a missing extra."""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import ENV, REPO

import saslkit
import saslkit.testing.vectors

CORE = {"argon2-cffi", "cryptography", "pyjwt"}
EXTRAS = {"redis", "aiosmtpd", "tls", "postgres", "metrics", "all", "test"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, env=ENV, timeout=300)
    (built,) = out.glob("saslkit-*.whl")
    return built


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(name).decode("utf-8"))


def _requirement_name(requirement: str) -> str:
    name = requirement.split(";")[0]
    for stop in "<>=!~[ ":
        name = name.split(stop)[0]
    return name.strip().lower()


@pytest.mark.slow
def test_wheel_metadata(wheel: Path) -> None:
    meta = _metadata(wheel)
    requires = meta.get_all("Requires-Dist") or []
    core = {_requirement_name(r) for r in requires if "extra ==" not in r}
    assert core == CORE  # redis, aiosmtpd, pyOpenSSL, prometheus_client are extras
    assert set(meta.get_all("Provides-Extra") or []) == EXTRAS
    by_extra = {e: {_requirement_name(r) for r in requires if f"extra == '{e}'" in r} for e in EXTRAS}
    assert by_extra["redis"] == {"redis"} and by_extra["aiosmtpd"] == {"aiosmtpd"}
    assert by_extra["tls"] == {"pyopenssl"} and by_extra["metrics"] == {"prometheus-client"}
    assert by_extra["postgres"] == {"psycopg", "psycopg-pool"}
    assert by_extra["all"] == {"redis", "aiosmtpd", "pyopenssl", "psycopg", "psycopg-pool", "prometheus-client"}
    assert by_extra["all"] <= by_extra["test"]  # the suite exercises every extra
    assert meta["Version"] == saslkit.__version__  # one source: saslkit/__init__.py
    assert meta["License-Expression"] == "MIT"
    assert {u.split(",")[0] for u in meta.get_all("Project-URL") or []} >= {"Homepage", "Repository", "Issues"}
    ci_python = f"Programming Language :: Python :: {sys.version_info.major}.{sys.version_info.minor}"
    assert ci_python in (meta.get_all("Classifier") or [])
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    source = {p.name for p in (REPO / "vectors").glob("*.json")}
    assert source and {f"saslkit/_vectors/{n}" for n in source} <= names


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel installed (no index) into a new virtual environment; its dependencies come from this one."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, system_site_packages=True, with_pip=False)
    python = root / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    yield root


def _venv_env() -> dict[str, str]:
    return {k: v for k, v in ENV.items() if k != "PYTHONPATH"}


@pytest.mark.slow
def test_installed_wheel_checks_its_shipped_vectors(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run([installed / "bin" / "python", "-c", "import saslkit; print(saslkit.__file__)"],
                           capture_output=True, text=True, env=_venv_env(), cwd=tmp_path, check=True)
    assert where.stdout.startswith(str(installed))  # the wheel, not a checkout
    done = subprocess.run([installed / "bin" / "saslkit", "vectors", "check"], capture_output=True, text=True,
                          env=_venv_env(), cwd=tmp_path, timeout=120, check=False)
    count = len(saslkit.testing.vectors.check_files([REPO / "vectors"]))
    assert (done.returncode, done.stdout) == (0, f"{count} passed, 0 failed\n")


def test_vectors_check_without_files_runs_the_shipped_set() -> None:
    from saslkit.cli import main
    from saslkit.testing.vectors import shipped_vectors

    assert shipped_vectors() == REPO / "vectors"  # a checkout: the source directory
    out = subprocess.run([sys.executable, "-m", "saslkit", "vectors", "check"], capture_output=True, text=True,
                         env=ENV, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.endswith(" passed, 0 failed\n") and not out.stdout.startswith("0 ")
    assert main(["vectors", "check", str(REPO / "vectors" / "plain.json")]) == 0  # files still work


def _without(module: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python where ``module`` cannot be imported (as if its extra were not installed)."""
    prelude = f"import sys; sys.modules[{module!r}] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=ENV,
                          timeout=60, check=False)


def test_redis_store_without_the_extra_names_it(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    done = _without("redis", "from saslkit.cli import main\n"
                    f"sys.exit(main(['token', 'list', '--db', {str(db)!r}, '--store', 'redis://127.0.0.1:1/0']))")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "saslkit: the Redis token store needs the redis package: pip install 'saslkit[redis]'")


def test_aiosmtpd_adapter_without_the_extra_names_it() -> None:
    done = _without("aiosmtpd", "from saslkit._extras import MissingExtra\n"
                    "try:\n    import saslkit.smtp.aiosmtpd\nexcept MissingExtra as exc:\n    print(exc)\n")
    assert done.stdout.strip() == "saslkit.smtp.aiosmtpd needs the aiosmtpd package: pip install 'saslkit[aiosmtpd]'"


def test_core_imports_without_any_extra() -> None:
    code = ("import sys\nfor m in ('redis', 'aiosmtpd', 'OpenSSL', 'prometheus_client', 'psycopg', 'psycopg_pool'):\n"
            "    sys.modules[m] = None\n"
            "import saslkit, saslkit.cli, saslkit.smtp.server, saslkit.imap.server, saslkit.stores\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60,
                          check=False)
    assert done.stdout == "ok\n", done.stderr


def test_license_file() -> None:
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert os.path.exists(REPO / "LICENSE")
