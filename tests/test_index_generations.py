"""Generations on disk: a save removes only files a manifest recorded, cleans temporary
manifests left by a killed writer; readers never fail while a writer commits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from m2v_search.index import VectorIndex  # noqa: E402

DIM = 16


def make_index(directory: Path, n: int = 200) -> VectorIndex:
    rng = np.random.default_rng(5)
    directory.mkdir(parents=True, exist_ok=True)
    index = VectorIndex.create(directory, dim=DIM, index_kind="flat")
    index.upsert([{"id": f"d{i}", "text": f"text {i}"} for i in range(n)], vectors=rng.standard_normal((n, DIM)))
    index.save()
    return index


def manifest_of(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def test_save_removes_only_files_a_manifest_recorded(tmp_path: Path) -> None:
    directory = tmp_path / "idx"
    directory.mkdir()
    foreign = ["index.mine.faiss", "docstore.notes.sqlite", "index.000001-deadbeef.faiss", ".index.x.tmp",
               ".manifest.json.tmp-abc"]
    for name in foreign:
        (directory / name).write_text("the user's own file")
    index = make_index(directory)
    first = manifest_of(directory)
    index.delete(["d1"])
    index.save()
    second = manifest_of(directory)
    assert not any((directory / name).exists() for name in first["files"])  # recorded: removed
    assert all((directory / name).exists() for name in second["files"])
    for name in foreign:
        assert (directory / name).read_text() == "the user's own file"


def test_stale_temporary_manifest_is_removed_by_the_next_writer(tmp_path: Path) -> None:
    directory = tmp_path / "idx"
    index = make_index(directory)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (directory / ".manifest.json.tmp-999999").write_text("{half a manif")  # left by kill -9
    (directory / ".manifest.json.tmp-424242").symlink_to(victim)
    index.delete(["d3"])
    index.save()
    assert not (directory / ".manifest.json.tmp-999999").exists()
    assert not (directory / ".manifest.json.tmp-424242").is_symlink()
    assert victim.read_text() == "precious"  # the link was removed, never written through
    assert len(VectorIndex.open(directory)) == 199


WRITER = textwrap.dedent("""
    import os, sys, time
    from m2v_search.index import VectorIndex

    directory, stop, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
    started, commits = time.monotonic(), 0
    with VectorIndex.open(directory) as index:
        while not os.path.exists(stop) and time.monotonic() - started < limit:
            index.upsert([{"id": f"w{commits}-{i}", "text": f"written {commits} {i}"} for i in range(5)])
            index.delete([f"w{commits - 1}-{i}" for i in range(5)])
            index.save()
            commits += 1
    print(commits)
""")

CLI_READER = textwrap.dedent("""
    import subprocess, sys

    directory, count = sys.argv[1], int(sys.argv[2])
    reads, failures = 0, []
    while reads < count:  # a fresh process each time: it loads the model between its reads
        done = subprocess.run([sys.executable, "-m", "m2v_search.index", "search", directory, "-q", "written",
                               "-k", "3"], capture_output=True, text=True)
        if done.returncode != 0 or done.stdout.count("\\n") != 3:
            failures.append(done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"])
        reads += 1
    print(reads, len(failures), failures[:3])
""")


def test_readers_never_fail_while_a_writer_commits(tmp_path: Path, tiny_model_folder: Path) -> None:
    """Stress: a writer process commits add+delete in a loop while reader threads and CLI
    search processes (each loading the model between reading the manifest and the files)
    open and search the index over and over. The CLI readers stop after a few searches each,
    then the writer and the reader threads (the writer at the latest after 45 s)."""
    directory, stop = tmp_path / "idx", tmp_path / "stop"
    directory.mkdir()
    with VectorIndex.create(directory, str(tiny_model_folder), index_kind="flat") as index:
        index.upsert([{"id": f"d{i}", "text": f"document number {i}"} for i in range(300)])
        index.save()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(directory), str(stop), "45"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    readers = [subprocess.Popen([sys.executable, "-c", CLI_READER, str(directory), "3"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors: list[str] = []
    reads = [0]

    def read_loop() -> None:
        while writer.poll() is None:
            try:
                with VectorIndex.open(directory) as opened:
                    hits = opened.search_batch(["document", "written"], k=4)
                    assert [len(h) for h in hits] == [4, 4]
                reads[0] += 1
            except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                errors.append(repr(error))

    threads = [threading.Thread(target=read_loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        outputs = [reader.communicate(timeout=50) for reader in readers]
    finally:
        stop.touch()
    writer_out, writer_err = writer.communicate(timeout=10)
    for thread in threads:
        thread.join(timeout=10)
    assert writer.returncode == 0, writer_err
    for reader, (_, stderr) in zip(readers, outputs):
        assert reader.returncode == 0, stderr
    commits = int(writer_out.split()[0])
    cli = [output[0].split(maxsplit=2) for output in outputs]
    assert errors == [], errors[:3]
    assert all(int(failed) == 0 for _, failed, _ in cli), cli
    assert commits >= 20 and reads[0] >= 10 and sum(int(done) for done, _, _ in cli) == 6, (commits, reads, cli)
    with VectorIndex.open(directory) as final:
        assert final.verify() == [] and len(final) == 305


@pytest.mark.parametrize("commits_in_between, expected", [(1, 199), (2, 198)])
def test_reader_behind_the_writer_retries_on_the_new_manifest(tmp_path: Path, monkeypatch, commits_in_between: int,
                                                              expected: int) -> None:
    """The race of a reader and a writer, made deterministic: the writer commits after the
    reader has read the manifest and before it opens the files (which the commit removed):
    the reader reads the new manifest and its files instead of failing."""
    from m2v_search.index import generations

    directory = tmp_path / "idx"
    writer = make_index(directory)
    real = generations.read_verified_files
    calls = []

    def commit_first(directory_: Path, manifest: dict) -> dict:
        if not calls:
            for step in range(commits_in_between):
                writer.delete([f"d{step}"])
                writer.save()
        calls.append(manifest["generation"])
        return real(directory_, manifest)

    monkeypatch.setattr(generations, "read_verified_files", commit_first)
    with VectorIndex.open(directory) as reader:
        assert len(reader) == expected and reader.verify() == []
    assert len(calls) == 2 and calls[0] != calls[1]


def test_files_open_before_a_commit_stay_readable(tmp_path: Path, monkeypatch) -> None:
    """Every file of a generation is opened before any is read: a commit that removes them
    while the reader is reading the first one cannot make the second one disappear."""
    from m2v_search.index import manifest as manifest_module

    directory = tmp_path / "idx"
    writer = make_index(directory)
    listed = json.loads((directory / "manifest.json").read_text())["files"]  # FAISS, docstore, lexical part
    real_open = manifest_module.open_for_reading
    opened, committed = [], []

    class CommitOnFirstRead:
        def __init__(self, handle) -> None:
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

        def read(self) -> bytes:
            if not committed:  # the first read of the generation
                committed.append(True)
                writer.delete(["d0"])
                writer.save()  # removes the files the reader has open
            return self.handle.read()

    def open_and_count(path: Path):
        if path.name == "manifest.json":
            return real_open(path)
        opened.append(path.name)
        return CommitOnFirstRead(real_open(path))

    monkeypatch.setattr(manifest_module, "open_for_reading", open_and_count)
    with VectorIndex.open(directory) as reader:
        assert len(reader) == 200  # the generation it started with, read in full
    assert committed and sorted(opened) == sorted(listed)  # removed meanwhile; no retry was needed
    assert not any((directory / name).exists() for name in opened)


KILLED_WRITER = textwrap.dedent('''
    import sys
    from m2v_search.index import VectorIndex
    directory, model = sys.argv[1], sys.argv[2]
    round_ = 0
    while True:  # killed from outside (SIGKILL) at a random moment
        with VectorIndex.open(directory, model=model) as index:
            index.upsert([{"id": f"r{round_}-{i}", "text": f"round {round_} text {i}"} for i in range(40)])
            index.delete([f"r{round_ - 1}-{i}" for i in range(20)])
            index.save()
        round_ += 1
''')


def test_kill_9_at_random_moments_leaves_a_whole_generation(tmp_path: Path, tiny_model_folder: Path) -> None:
    """Stress: a writer looping upsert + delete + save is killed with SIGKILL at random moments
    (12 times, bounded to well under a minute); after every kill the index opens, verifies, and
    holds exactly what one of its committed generations held."""
    import os
    import random
    import signal
    import time

    directory = tmp_path / "idx"
    with VectorIndex.create(directory, str(tiny_model_folder), index_kind="flat") as index:
        index.upsert([{"id": f"base{i}", "text": f"base document {i}"} for i in range(100)])
        index.save()
    rng = random.Random(7)
    deadline = time.monotonic() + 45
    kills, with_commits = 0, 0
    while kills < 12 and time.monotonic() < deadline:
        writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(directory), str(tiny_model_folder)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 2.0))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)
        kills += 1
        with VectorIndex.open(directory) as opened:  # checksums verified
            assert opened.verify() == []
            ids = opened.ids()
            assert len(ids) == len(opened)
            assert {f"base{i}" for i in range(100)} <= set(ids)  # never touched by the writer
            rounds = {doc_id.split("-")[0] for doc_id in ids if doc_id.startswith("r")}
            with_commits += bool(rounds)
            for name in rounds:  # every round present is whole: 40 added, or 20 left after the next round
                count = sum(doc_id.startswith(f"{name}-") for doc_id in ids)
                assert count in (20, 40), (name, count)
        leftovers = [p.name for p in directory.iterdir() if p.name.endswith(".tmp") or ".tmp-" in p.name]
        assert len(leftovers) <= 6  # a kill may leave its staged files; the next writer removes them
    assert kills >= 5 and with_commits >= 3  # the writer committed before most kills
