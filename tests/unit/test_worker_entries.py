"""Registry entries are data another process wrote: read back field by field."""

from __future__ import annotations

import json

from offload._brokers._base import WorkerInfo
from offload._brokers._workers import MAX_RUNNING_LISTED, decode_worker, encode_worker

INFO = WorkerInfo("h:1:ab", "h", 1, ("mail",), "threads", 8, 10.0, 12.5, ("j1", "j2"))


def test_an_entry_reads_back_as_it_was_written() -> None:
    assert decode_worker(encode_worker(INFO), INFO.id) == INFO
    assert decode_worker(encode_worker(INFO).encode(), INFO.id) == INFO


def test_a_malformed_entry_keeps_its_id_and_shows_question_marks() -> None:
    for text in (
        "not json",
        "[]",
        json.dumps({"host": 3}),
        json.dumps({**INFO._asdict(), "pid": "1"}),
    ):
        info = decode_worker(text, "w:2:cd")
        assert (info.id, info.host, info.pool, info.running) == ("w:2:cd", "?", "?", ())


def test_a_huge_running_list_is_cut_when_stored() -> None:
    many = INFO._replace(running=tuple(f"j{i}" for i in range(MAX_RUNNING_LISTED + 5)))
    assert len(decode_worker(encode_worker(many), many.id).running) == MAX_RUNNING_LISTED
