"""Write examples/corpus.jsonl: docstrings of the running interpreter's standard library.

The Python standard library and its docstrings are under the PSF licence. One record per
documented public module, class, function and method:
``{"id": "json.loads", "text": "json.loads\\n<docstring>", "metadata": {"module", "kind", "name"}}``.
The output depends on the Python version (recorded in each record's metadata).

    python scripts/make_example_corpus.py [-o examples/corpus.jsonl] [--limit 4000]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import platform
import sys
import warnings
from pathlib import Path

# Modules with side effects on import, platform-specific ones, and big internal packages.
SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "ensurepip", "venv",
        "pydoc_data", "test", "msilib", "winreg", "winsound", "msvcrt", "_winapi", "nt", "ntpath", "__main__",
        "__phello__", "__hello__", "xxsubtype", "xxlimited", "pty", "tty", "crypt", "nis", "spwd", "ossaudiodev"}
MAX_CHARS = 1200


def clean(doc: str | None) -> str | None:
    if not doc:
        return None
    text = inspect.cleandoc(doc).strip()
    if len(text) < 20:
        return None
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS].rsplit(" ", 1)[0] + " ..."


def records_of(module_name: str) -> list[dict]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - optional or platform modules
        return []
    version = platform.python_version()
    out: list[dict] = []

    def add(qualname: str, kind: str, doc: str | None) -> None:
        text = clean(doc)
        if text:
            out.append({"id": qualname, "text": f"{qualname}\n{text}",
                        "metadata": {"module": module_name, "kind": kind, "name": qualname.rsplit(".", 1)[-1],
                                     "python": version}})

    add(module_name, "module", module.__doc__)
    public = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    for name in sorted(set(public)):
        obj = getattr(module, name, None)
        if obj is None or getattr(obj, "__module__", module_name) != module_name:
            continue  # re-exported from elsewhere: documented there
        if inspect.isclass(obj):
            add(f"{module_name}.{name}", "class", obj.__doc__)
            for member, value in sorted(vars(obj).items()):
                if member.startswith("_") or not (inspect.isfunction(value) or inspect.ismethoddescriptor(value)):
                    continue
                add(f"{module_name}.{name}.{member}", "method", getattr(value, "__doc__", None))
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            add(f"{module_name}.{name}", "function", obj.__doc__)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parents[1] / "examples" / "corpus.jsonl")
    parser.add_argument("--limit", type=int, default=4000, help="at most this many records")
    args = parser.parse_args()
    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in SKIP)
    seen: set[str] = set()
    records: list[dict] = []
    for name in names:
        for record in records_of(name):
            if record["id"] not in seen:
                seen.add(record["id"])
                records.append(record)
    if len(records) > args.limit:  # keep every module represented: take an even spread
        step = len(records) / args.limit
        records = [records[int(i * step)] for i in range(args.limit)]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    temporary.replace(args.output)
    modules = len({r["metadata"]["module"] for r in records})
    print(f"wrote {len(records)} records from {modules} modules to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
