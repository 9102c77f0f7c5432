"""Docs that run: every ```python block of README.md and docs/*.md is executed and type-checked with
``mypy --strict``; the blocks that need a server define functions, which are called here against real
ones (``saslkit serve smtp|imap``, a socket, aiosmtpd).  The API reference generator runs and every public
name it documents has a docstring."""

from __future__ import annotations

import imaplib
import re
import runpy
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from servers import ENV, REPO, ServerProcess, saslkit_run

from saslkit.net.server import ensure_certificate

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in DOCS:
        for n, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8")), 1):
            found.append((f"{page.relative_to(REPO)}#{n}", match.group(1)))
    return found


BLOCKS = _blocks()


def test_there_are_examples_in_every_guide() -> None:
    pages = {name.split("#")[0] for name, _ in BLOCKS}
    assert {"README.md", "docs/server-authors.md", "docs/client-authors.md", "docs/harness-writers.md"} <= pages


@pytest.fixture(scope="module")
def namespaces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every block executed once, in its own namespace, from an empty directory."""
    where = tmp_path_factory.mktemp("examples")
    out: dict[str, dict[str, Any]] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(where)
        for name, code in BLOCKS:
            namespace: dict[str, Any] = {"__name__": f"example_{len(out)}"}
            exec(compile(code, name, "exec"), namespace)  # noqa: S102 - our own documentation
            out[name] = namespace
    return out


@pytest.mark.parametrize("name", [name for name, _ in BLOCKS])
def test_example_runs(namespaces: dict[str, dict[str, Any]], name: str) -> None:
    assert name in namespaces


@pytest.mark.slow
def test_examples_pass_mypy_strict(tmp_path: Path) -> None:
    files = []
    for n, (name, code) in enumerate(BLOCKS):
        path = tmp_path / f"example_{n}.py"
        path.write_text(f"# {name}\n{code}", encoding="utf-8")
        files.append(str(path))
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-version", "3.11",
                           *files], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _function(namespaces: dict[str, dict[str, Any]], name: str) -> Callable[..., Any]:
    found = [ns[name] for ns in namespaces.values() if callable(ns.get(name))]
    assert len(found) == 1, f"example function {name} defined {len(found)} times"
    return found[0]


# --------------------------------------------------------------------------- the examples that need servers

PASSWORD = "pencil"


class Smtp(ServerProcess):
    protocol = "smtp"
    log_prefix = "docs-smtp"


class Imap(ServerProcess):
    protocol = "imap"
    log_prefix = "docs-imap"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("docs-state")
    for user in ("jörg", "alice"):
        added = saslkit_run("user", "add", user, "--db", str(path / "saslkit.db"), "--iterations", "4096",
                            stdin=PASSWORD + "\n")
        assert added.returncode == 0, added.stderr
    return path


@pytest.fixture(scope="module")
def servers(state: Path) -> Iterator[tuple[Smtp, Imap]]:
    smtp = Smtp(state / "saslkit.db")
    imap = Imap(state / "saslkit.db")
    try:
        yield smtp, imap
    finally:
        assert smtp.stop() == 0 and imap.stop() == 0


def _trust(server: ServerProcess) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server.certificate))
    context.check_hostname = False
    return context


def test_readme_stdlib_example(namespaces: dict[str, dict[str, Any]], servers: tuple[Smtp, Imap]) -> None:
    smtp, _ = servers
    login_as_jorg = _function(namespaces, "login_as_jorg")
    assert login_as_jorg("127.0.0.1", smtp.port, _trust(smtp)) == "SCRAM-SHA-512-PLUS"


def test_client_guide_examples(namespaces: dict[str, dict[str, Any]], servers: tuple[Smtp, Imap]) -> None:
    smtp, imap = servers
    login = _function(namespaces, "submit")("127.0.0.1", smtp.port, _trust(smtp), "alice", PASSWORD)
    assert login.token
    assert _function(namespaces, "count_mail")("127.0.0.1", imap.port, _trust(imap), "alice", login.token) == 0


def test_minimal_imap_server_example(namespaces: dict[str, dict[str, Any]]) -> None:
    from saslkit.stdlib import imap_login

    serve = _function(namespaces, "serve_imap_connection")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=lambda: serve(listener.accept()[0], b"s" * 32), daemon=True)
        thread.start()
        imap = imaplib.IMAP4("127.0.0.1", listener.getsockname()[1], timeout=30)
        try:
            assert imap_login(imap, "alice", "pencil", "SCRAM-SHA-256").mechanism == "SCRAM-SHA-256"
            assert imap.list('""', "*") == ("OK", [b'() "/" "INBOX"', b'() "/" "Sent"', b'() "/" "Archive/2026"'])
        finally:
            imap.logout()
        thread.join(10)


def _submit_over_starttls(port: int, cert: Path) -> int:
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert "mail.example.net" in client.ehlo()[1].decode()  # server_hostname=, not the bind address
        client.starttls(context=context)
        from saslkit.stdlib import smtp_login

        smtp_login(client, "alice", PASSWORD, "SCRAM-SHA-256")
        return len(client.sendmail("alice@example.net", ["bob@example.org"], "Subject: hi\r\n\r\nhello\r\n"))


@pytest.mark.parametrize("function", ["submission_server", "start_submission"])
def test_aiosmtpd_examples(namespaces: dict[str, dict[str, Any]], state: Path, function: str) -> None:
    pytest.importorskip("aiosmtpd")
    cert, key, _ = ensure_certificate(state, "localhost")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    port = free_port()
    start = _function(namespaces, function)
    if function == "submission_server":
        controller = start(state, cert, key, bind="127.0.0.1", port=port)
    else:
        from aiosmtpd.handlers import Sink

        controller = start(Sink(), tls, state, port=port)
    try:
        assert _submit_over_starttls(port, cert) == 0  # every recipient accepted
    finally:
        controller.stop()


# --------------------------------------------------------------------------- the API reference


def test_api_reference_generates_and_documents_every_public_name() -> None:
    generator = runpy.run_path(str(REPO / "docs" / "gen_api.py"))
    text = generator["render"]()
    assert text.startswith("# API reference")
    assert (REPO / "docs" / "api.md").exists()
    import importlib

    undocumented = []
    for module_name in generator["MODULES"]:
        module = importlib.import_module(module_name)
        assert module.__doc__, module_name
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if typing.get_origin(obj) is not None:  # a type alias (Callable[...]): documented by its comment
                continue
            if callable(obj) and not (obj.__doc__ or "").strip():
                undocumented.append(f"{module_name}.{name}")
            if callable(obj) and f"`{name}" not in text and module_name != "saslkit":
                undocumented.append(f"{module_name}.{name} (not in the reference)")
    assert not undocumented, undocumented
