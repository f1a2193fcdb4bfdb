"""Line logs that survive a crash mid-write, and JSON without NaN."""

from __future__ import annotations

from pathlib import Path

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


def test_a_torn_line_is_reported_once_however_often_the_log_is_read(tmp_path):
    import warnings

    path = tmp_path / "log.jsonl"
    path.write_text('{"epoch": 1}\n{"epo')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):  # a report reads a run's log for several tables and figures
            assert read_jsonl(path) == [{"epoch": 1}]
    assert len(caught) == 1 and "unterminated last line" in str(caught[0].message)


def test_writable_folder_makes_and_removes_a_probe(tmp_path):
    from core.files import writable_folder

    assert writable_folder(tmp_path / "not" / "yet") is None and not (tmp_path / "not").exists()
    assert list(tmp_path.iterdir()) == []
    assert "cannot write in /proc" in writable_folder(Path("/proc/forbidden"))
    (tmp_path / "file").write_text("")
    assert writable_folder(tmp_path / "file" / "below") == f"{tmp_path / 'file'} is not a folder"
