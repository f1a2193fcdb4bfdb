"""Files a run folder holds, written so that a crash never leaves half of one.

Standard library only, so the analysis (which never imports torch) reads records and line
logs with the same code that writes them. Whole files are written through a temporary file
renamed over the target; JSON has no NaN or infinity, so they are stored as null.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def writable_folder(folder: Path) -> str | None:
    """Why `folder` (existing or not) cannot hold run folders, or None when it can: a folder is
    made and removed in it, or in its nearest existing parent, so nothing is left behind."""
    probe = Path(folder).expanduser().absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".s2h-write-check-"))
    except OSError as exc:
        return f"cannot write in {probe}: {exc.strerror or exc}"
    return None


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def finite(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def to_json(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(finite(obj), indent=indent, sort_keys=False, allow_nan=False)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, to_json(obj) + "\n")


# ----------------------------------------------------------------------------- line logs
# `log.jsonl` and `widths.jsonl` grow a line at a time while a run trains, so a crash (SIGKILL,
# a full disk) can leave an unterminated last line. Writers append each line with one write
# on an O_APPEND descriptor, first cutting off such a torn tail; readers drop an unterminated
# last line with a warning; rewrites are atomic (a temporary file renamed over).


def append_jsonl(path: Path, entry: dict[str, Any]) -> None:
    """Append `entry` as one line (non-finite floats as null), atomically per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (to_json(entry, indent=None) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a write cut short: drop its fragment
            content = os.pread(fd, size, 0)
            os.ftruncate(fd, content.rfind(b"\n") + 1)
        os.write(fd, line)
    finally:
        os.close(fd)


_WARNED_TORN: set[tuple[str, int]] = set()  # (path, size) of torn line logs already reported


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The entries of a line log; an unterminated last line that does not parse (a write cut
    short) is dropped with a warning, once per file and size however often it is read (a report
    reads a run's log for several tables and figures). A damaged line elsewhere raises: that is
    not a crash."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    entries = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # no newline after it: the last write did not finish
                if (str(path), len(text)) not in _WARNED_TORN:
                    _WARNED_TORN.add((str(path), len(text)))
                    warnings.warn(f"{path}: dropping an unterminated last line ({len(line)} characters)", stacklevel=2)
                continue
            raise ValueError(f"{path}: line {i + 1} is not JSON") from None
    return entries


def rewrite_jsonl(path: Path, entries: list[dict[str, Any]]) -> None:
    """Replace a line log atomically (resume drops the lines written after its checkpoint)."""
    write_text(path, "".join(to_json(entry, indent=None) + "\n" for entry in entries))


def unique(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON objects without repeats, in order (two writers of one line log may both append one)."""
    seen, out = set(), []
    for entry in entries:
        key = json.dumps(entry, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out
