"""Generate ``docs/api.md``, the API reference, from the docstrings of saslkit's public modules.

Run ``python docs/gen_api.py`` from the repository root after changing a public docstring or signature;
``tests/test_docs.py`` fails while ``docs/api.md`` differs from what this prints.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

#: The documented public surface, in reading order: module -> its ``__all__`` (or the names given).
MODULES = [
    "saslkit",
    "saslkit.registry",
    "saslkit.mechanism",
    "saslkit.context",
    "saslkit.credentials",
    "saslkit.errors",
    "saslkit.auth.engine",
    "saslkit.auth.client",
    "saslkit.auth.events",
    "saslkit.stdlib",
    "saslkit.smtp.session",
    "saslkit.smtp.server",
    "saslkit.smtp.aiosmtpd",
    "saslkit.imap.session",
    "saslkit.imap.server",
    "saslkit.dovecot.session",
    "saslkit.dovecot.server",
    "saslkit.channel_binding",
    "saslkit.keys",
    "saslkit.tokens",
    "saslkit.stores",
    "saslkit.penalty",
    "saslkit.logs",
    "saslkit.metrics",
    "saslkit.testing.vectors",
]

_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _signature(obj: object) -> str:
    try:
        text = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return _ADDRESS.sub("", text)


def _doc(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip()


def _entry(module: str, name: str, obj: object) -> list[str]:
    if inspect.isclass(obj):
        out = [f"### class `{name}{_signature(obj)}`", "", _doc(obj), ""]
        for member, value in sorted(vars(obj).items()):
            if member.startswith("_") or not (inspect.isfunction(value) or isinstance(value, property)
                                              or isinstance(value, (classmethod, staticmethod))):
                continue
            target = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
            doc = _doc(target)
            if not doc:
                continue
            shown = member if isinstance(value, property) else f"{member}{_signature(target)}"
            out += [f"- `{shown}`: {doc.splitlines()[0]}" + ("" if len(doc.splitlines()) == 1 else " …")]
        return [*out, ""]
    if inspect.isfunction(obj):
        return [f"### `{name}{_signature(obj)}`", "", _doc(obj), ""]
    if inspect.ismodule(obj):
        return []
    return [f"### `{name}`", "", f"`{_ADDRESS.sub('', repr(obj))[:200]}`", ""]


def render() -> str:
    """The whole reference, as Markdown."""
    lines = ["# API reference", "", "Generated from the docstrings by `python docs/gen_api.py`; do not edit.", ""]
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", _doc(module), ""]
        names = list(getattr(module, "__all__", []))
        if module_name == "saslkit":
            lines += ["Re-exports: " + ", ".join(f"`{n}`" for n in names), ""]
            continue
        for name in names:
            obj = getattr(module, name)
            if getattr(obj, "__module__", module_name) not in (module_name, None) and module_name != "saslkit":
                owner = getattr(obj, "__module__", "")
                if owner.startswith("saslkit") and owner in MODULES:
                    lines += [f"### `{name}`", "", f"See `{owner}.{name}`.", ""]
                    continue
            lines += _entry(module_name, name, obj)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def main() -> None:
    target = Path(__file__).resolve().parent / "api.md"
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's saslkit
    main()
