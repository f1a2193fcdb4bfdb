"""Line logs that survive a crash mid-write, and JSON without NaN."""

from __future__ import annotations

import pytest

from core.files import append_jsonl, read_jsonl, rewrite_jsonl


def test_a_torn_last_line_is_dropped_by_readers_and_cut_off_by_the_next_append(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, {"epoch": 1, "loss": float("nan")})
    with open(path, "a") as handle:
        handle.write('{"epoch": 2, "lo')  # a write cut short
    with pytest.warns(UserWarning, match="unterminated last line"):
        assert read_jsonl(path) == [{"epoch": 1, "loss": None}]  # NaN stored as null
    append_jsonl(path, {"epoch": 2})
    assert path.read_text() == '{"epoch": 1, "loss": null}\n{"epoch": 2}\n'
    path.write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):  # a damaged line inside is not a crash: raised
        read_jsonl(path)


def test_rewrite_replaces_the_whole_log(tmp_path):
    path = tmp_path / "widths.jsonl"
    for step in range(4):
        append_jsonl(path, {"step": step})
    rewrite_jsonl(path, [e for e in read_jsonl(path) if e["step"] < 2])
    assert path.read_text() == '{"step": 0}\n{"step": 1}\n'
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    assert read_jsonl(tmp_path / "absent.jsonl") == []
