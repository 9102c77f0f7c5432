"""The README's library example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README.read_text(), re.S)
    assert first_block is not None
    lines = first_block.group(1).strip().splitlines()
    assert len(lines) == 2
    assert "saslkit" in lines[0] and "pytest" in lines[1]


def test_readme_python_example_runs() -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), str(README), "exec"), namespace)  # noqa: S102 - our own README
    outcome = namespace["outcome"]
    assert getattr(outcome, "authcid", None) == "user"
