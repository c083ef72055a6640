"""The Dask build's readers (byte-range blocks of a JSONL file, Dask bag rows) refuse a bad line
as the single-machine reader does: same checks (64 MiB line limit included), same messages."""

from __future__ import annotations

import json

import pytest

from m2v_search.distributed.partitions import bag_records, count_newlines, number_lines, read_block, split_file
from m2v_search.index.corpus import MAX_LINE_BYTES, CorpusOptions, CorpusReader
from m2v_search.index.errors import CorpusError

LONG_TEXT = "a" * (MAX_LINE_BYTES + 1000)
LINES = [
    json.dumps({"id": "first", "text": "a good line"}),
    json.dumps({"id": "huge", "text": LONG_TEXT}),                    # line 2: over the limit
    '{"id": "nan", "text": "x", "metadata": {"score": NaN}}',         # line 3: no such number in JSON
    json.dumps({"id": "second", "text": "another good line"}),
    '{"id": "surrogate", "text": "lone \\ud800 half"}',               # line 5: not encodable text
    "",
    json.dumps({"id": "third", "text": "the last good line"}),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "bad.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def blocks_of(path, partition_size):
    blocks = split_file(path, partition_size)
    number_lines(blocks, [count_newlines(block) for block in blocks])
    return blocks


@pytest.mark.parametrize("partition_size", [8 << 20, 1 << 30])  # the long line spans blocks / one block
def test_blocks_refuse_and_skip_bad_lines_as_the_local_reader(corpus, partition_size):
    with pytest.raises(CorpusError) as local:
        list(CorpusReader(str(corpus)))
    assert str(local.value) == f"{corpus}: line 2: longer than 64 MiB; split the document"

    blocks = blocks_of(corpus, partition_size)
    assert (len(blocks) > 5) == (partition_size < MAX_LINE_BYTES)
    failures = []
    for block in blocks:
        records, _ = read_block(block, CorpusOptions())
        try:
            list(records)
        except CorpusError as error:
            failures.append(str(error))
    assert failures[0] == str(local.value)  # only the block where the line starts owns (and refuses) it
    if len(blocks) > 1:  # the blocks after it go on reading, and refuse line 3 as the local reader would
        with pytest.raises(CorpusError) as nan:
            CorpusReader(str(corpus)).parse_line(LINES[2].encode("utf-8"), 3)
        assert str(nan.value) in failures

    skipping = CorpusOptions(skip_invalid=True)
    local_reader = CorpusReader(str(corpus), skipping)
    expected = [(record.id, record.text) for record in local_reader]
    assert [doc_id for doc_id, _ in expected] == ["first", "second", "third"] and local_reader.skipped == 3
    got, skipped, lines = [], 0, 0
    for block in blocks:
        records, reader = read_block(block, skipping)
        got.extend((record.id, record.text) for record in records)
        skipped, lines = skipped + reader.skipped, lines + reader.lines
    assert got == expected and skipped == local_reader.skipped and lines == local_reader.lines == len(LINES)


def test_bag_rows_get_the_line_checks(corpus):
    where = "bag: partition 0 row 1"
    with pytest.raises(CorpusError, match=f"^{where}: longer than 64 MiB; split the document$"):
        bag_records([LINES[1]], CorpusOptions(), "bag", 0)
    with pytest.raises(CorpusError, match=f"^{where}: longer than 64 MiB"):
        bag_records([LINES[1].encode("utf-8")], CorpusOptions(), "bag", 0)
    for line in (LINES[2], LINES[4]):  # NaN, a lone surrogate: the same message as from a file's line
        with pytest.raises(CorpusError) as local:
            CorpusReader("bag").parse_line(line.encode("utf-8"), 1)
        with pytest.raises(CorpusError) as bag_error:
            bag_records([line], CorpusOptions(), "bag", 0)
        assert str(bag_error.value) == str(local.value).replace("bag: line 1", where)
    with pytest.raises(CorpusError, match=f"^{where}: invalid JSON: Expecting ',' delimiter"):
        bag_records(['{"id": "x" "text": "y"}'], CorpusOptions(), "bag", 0)
    records, skipped = bag_records([LINES[0], LINES[1], LINES[2], LINES[3]], CorpusOptions(skip_invalid=True),
                                   "bag", 0)
    assert [record.id for record in records] == ["first", "second"] and skipped == 2
