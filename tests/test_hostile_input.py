"""Hostile and careless input on the CLI and the corpus reader (issue 14): no data loss, no writes
through links, no traceback; one clear line on stderr and the documented exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from m2v_search.cli import index_main as main  # noqa: E402
from m2v_search.index import VectorIndex  # noqa: E402

ROOT = Path(__file__).parents[1]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def rows(prefix: str, n: int) -> list[dict]:
    return [{"id": f"{prefix}-{i}", "text": f"{prefix} document {i} about topic {i % 7}", "g": i % 3} for i in range(n)]


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture()
def built(tmp_path: Path, tiny_model_folder: Path, capsys) -> Path:
    directory = tmp_path / "idx"
    code, _, _ = run(capsys, "build", write_jsonl(tmp_path / "a.jsonl", rows("a", 60)), "-o", directory,
                     "--model", tiny_model_folder, "--quiet")
    assert code == 0
    return directory


# ---------------------------------------------------------------------- 1. what a build may delete
def test_build_never_deletes_a_build_folder_it_did_not_make(built: Path, tmp_path: Path, tiny_model_folder: Path,
                                                            capsys) -> None:
    precious = built / ".build" / "thesis.tex"
    precious.parent.mkdir()
    precious.write_text("years of work")
    for corpus in (write_jsonl(tmp_path / "b.jsonl", rows("b", 5)), tmp_path / "missing.jsonl"):
        for extra in ([], ["--resume"], ["--force"]):
            code, _, err = run(capsys, "build", corpus, "-o", built, "--model", tiny_model_folder, "--quiet", *extra)
            assert code == 2 and "not made by an m2v-index build" in one_line(err)
            assert precious.read_text() == "years of work"
    assert len(VectorIndex.open(built)) == 60


def test_a_build_killed_while_making_its_folder_leaves_no_unmarked_folder(built: Path, tmp_path: Path,
                                                                          tiny_model_folder: Path, capsys,
                                                                          monkeypatch) -> None:
    """The build folder appears with its marker in one rename: dying just before it leaves no
    ``.build`` that later builds would refuse as not theirs."""
    import m2v_search.index.build as build_module

    def die(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module.os, "rename", die)
    code, _, err = run(capsys, "build", write_jsonl(tmp_path / "b.jsonl", rows("b", 5)), "-o", built,
                       "--model", tiny_model_folder, "--quiet", "--force", "--checkpoint-every", "2")
    monkeypatch.undo()
    assert code == 130, err  # the CLI's exit code for an interrupt
    assert not (built / ".build").exists()
    left = list(built.glob(".build.new-*"))
    assert len(left) == 1 and os.listdir(left[0]) == ["build.json"]
    code, _, _ = run(capsys, "build", tmp_path / "b.jsonl", "-o", built, "--model", tiny_model_folder, "--quiet",
                     "--force")
    assert code == 0 and len(VectorIndex.open(built)) == 5
    assert not list(built.glob(".build.new-*"))  # the next build removed what the killed one left


def test_a_first_build_killed_while_making_its_folder_does_not_block_the_next(tmp_path: Path,
                                                                              tiny_model_folder: Path, capsys,
                                                                              monkeypatch) -> None:
    """Killed before its first checkpoint's rename, a build into a new directory leaves only a
    ``.build.new-*`` folder with its marker; the next build removes it instead of calling the
    directory "not empty". A like-named folder holding anything else is not touched."""
    import m2v_search.index.build as build_module

    def die(*args: object) -> None:
        raise KeyboardInterrupt

    corpus = write_jsonl(tmp_path / "b.jsonl", rows("b", 5))
    directory = tmp_path / "fresh"
    monkeypatch.setattr(build_module.os, "rename", die)
    code, _, _ = run(capsys, "build", corpus, "-o", directory, "--model", tiny_model_folder, "--quiet",
                     "--checkpoint-every", "2")
    monkeypatch.undo()
    assert code == 130 and len(list(directory.glob(".build.new-*"))) == 1
    code, _, err = run(capsys, "build", corpus, "-o", directory, "--model", tiny_model_folder, "--quiet")
    assert code == 0, err
    assert len(VectorIndex.open(directory)) == 5 and not list(directory.glob(".build.new-*"))

    foreign = directory / ".build.new-notes"
    foreign.mkdir()
    (foreign / "draft.txt").write_text("mine")
    code, _, _ = run(capsys, "build", corpus, "-o", directory, "--model", tiny_model_folder, "--quiet")
    assert code == 0 and (foreign / "draft.txt").read_text() == "mine"


def test_resume_refuses_a_checkpoint_made_from_another_glob_or_url(built: Path, tmp_path: Path,
                                                                    tiny_model_folder: Path, capsys) -> None:
    # Before: for a glob, a list or a URL (no local file to fingerprint) --resume only warned "cannot
    # check that ... is the corpus" and went on: 1000 records of corpus A + 20 of corpus B in one index.
    from m2v_search.index.build import BUILD_MARKER, MARKER_FORMAT

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for part in ("1", "2"):
            write_jsonl(tmp_path / name / f"{part}.jsonl", rows(f"{name}{part}", 10))
    assert main(["build", str(tmp_path / "a" / "*.jsonl"), "-o", str(tmp_path / "scratch"), "--model",
                 str(tiny_model_folder), "--quiet"]) == 0
    capsys.readouterr()
    checkpoint = built / ".build"
    VectorIndex.open(tmp_path / "scratch").save(checkpoint)
    recorded = f"{tmp_path / 'a' / '1.jsonl'} (+1 files)"
    (checkpoint / BUILD_MARKER).write_text(json.dumps({"format": MARKER_FORMAT, "corpus": None,
                                                       "corpus_name": recorded}))
    code, _, err = run(capsys, "build", tmp_path / "b" / "*.jsonl", "-o", built, "--model", tiny_model_folder,
                       "--quiet", "--resume")
    line = one_line(err)
    assert code == 3 and f"was made from {recorded}, not from" in line and len(VectorIndex.open(checkpoint)) == 20
    code, out, _ = run(capsys, "build", tmp_path / "a" / "*.jsonl", "-o", built, "--model", tiny_model_folder,
                       "--quiet", "--resume")
    assert code == 0 and json.loads(out)["resumed"] is True and json.loads(out)["documents"] == 20


def test_a_signal_while_a_build_deletes_its_checkpoints_does_not_block_the_next_build(
        tmp_path: Path, tiny_model_folder: Path, capsys, monkeypatch) -> None:
    # Before: SIGTERM in the middle of the final shutil.rmtree(DIR/.build) left a .build without its
    # marker (or without its FAISS file), and every later build was refused (exit 2 or 4).
    from m2v_search.index import build as build_module

    source = write_jsonl(tmp_path / "b.jsonl", rows("b", 40))
    target = tmp_path / "index"
    real_rmtree = shutil.rmtree

    def interrupted_rmtree(path, *args, **kwargs):
        if ".build" in str(path) and "ignore_errors" not in kwargs:
            for item in sorted(Path(path).rglob("*"), reverse=True)[:2]:  # part of the deletion, then the signal
                item.unlink() if item.is_file() else None
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(build_module.shutil, "rmtree", interrupted_rmtree)
    code, _, err = run(capsys, "build", source, "-o", target, "--model", tiny_model_folder, "--quiet",
                       "--batch-size", "10", "--checkpoint-every", "10")
    assert code == 130 and "its change was committed before the signal" in err
    monkeypatch.setattr(build_module.shutil, "rmtree", real_rmtree)
    assert not (target / ".build").exists() and len(VectorIndex.open(target)) == 40
    assert [p.name for p in target.iterdir() if p.name.startswith(".build.old-")]  # left for the next writer
    code, out, _ = run(capsys, "build", source, "-o", target, "--model", tiny_model_folder, "--quiet", "--resume")
    assert code == 0 and json.loads(out)["documents"] == 40
    assert not [p.name for p in target.iterdir() if p.name.startswith(".build")]


def test_repeated_id_warnings_stop_at_five_for_the_whole_corpus(tmp_path: Path, tiny_model_folder: Path,
                                                                 capsys) -> None:
    # Before: readers of a corpus's files share their ids, but each capped its own warnings, so four
    # copies of one file printed 15 "appeared earlier" lines instead of 5.
    for copy in range(4):
        write_jsonl(tmp_path / f"part{copy}.jsonl", rows("r", 10))
    code, out, err = run(capsys, "build", tmp_path / "part*.jsonl", "-o", tmp_path / "index", "--model",
                         tiny_model_folder)
    assert code == 0 and json.loads(out.splitlines()[-1])["duplicate_ids"] == 30
    assert err.count("appeared earlier in the corpus") == 5 and "30 record(s) repeated an id" in err


def test_a_failed_build_keeps_an_earlier_checkpoint(built: Path, tmp_path: Path, tiny_model_folder: Path,
                                                    capsys) -> None:
    source = write_jsonl(tmp_path / "b.jsonl", rows("b", 50))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "text": "fine"}\n{broken\n')
    # a checkpoint left by an interrupted build (made from b.jsonl)
    assert main(["build", str(source), "-o", str(tmp_path / "scratch"), "--model", str(tiny_model_folder),
                 "--quiet", "--batch-size", "10", "--checkpoint-every", "10"]) == 0
    capsys.readouterr()
    from m2v_search.index.build import BUILD_MARKER, MARKER_FORMAT, corpus_identity

    checkpoint = built / ".build"
    VectorIndex.open(tmp_path / "scratch").save(checkpoint)  # an index of b's 50 records
    (checkpoint / BUILD_MARKER).write_text(json.dumps({"format": MARKER_FORMAT, "corpus": corpus_identity(source)}))
    code, _, err = run(capsys, "build", bad, "-o", built, "--model", tiny_model_folder, "--quiet")
    assert code == 3 and "bad.jsonl: line 2" in one_line(err)
    assert (checkpoint / BUILD_MARKER).exists() and len(VectorIndex.open(checkpoint)) == 50
    # --resume with another corpus is refused, the checkpoint kept
    other = write_jsonl(tmp_path / "c.jsonl", rows("c", 50))
    code, _, err = run(capsys, "build", other, "-o", built, "--model", tiny_model_folder, "--quiet", "--resume")
    line = one_line(err)
    assert code == 3 and "was made from" in line and str(source.resolve()) in line and "c.jsonl" in line
    assert len(VectorIndex.open(checkpoint)) == 50
    # same size, other content: refused too
    same_size = tmp_path / "d.jsonl"
    same_size.write_bytes(source.read_bytes().replace(b"topic 1", b"topic 9"))
    code, _, err = run(capsys, "build", same_size, "-o", built, "--model", tiny_model_folder, "--quiet", "--resume")
    assert code == 3 and "other content" in one_line(err)
    # the right corpus resumes (all 50 already there) and the checkpoint folder goes
    code, out, _ = run(capsys, "build", source, "-o", built, "--model", tiny_model_folder, "--quiet", "--resume")
    summary = json.loads(out)
    assert code == 0 and summary["resumed"] is True and summary["unchanged"] == 50 and summary["documents"] == 50
    assert not checkpoint.exists()


def test_a_folder_with_someone_elses_manifest_is_never_built_over(tmp_path: Path, tiny_model_folder: Path,
                                                                   capsys) -> None:
    """Before: any file named manifest.json made the folder count as an index: it was replaced, exit 0."""
    source = write_jsonl(tmp_path / "a.jsonl", rows("a", 10))
    app = tmp_path / "app"
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "my app", "version": 3}')
    for extra in ([], ["--force"]):
        code, _, err = run(capsys, "build", source, "-o", app, "--model", tiny_model_folder, "--quiet", *extra)
        assert code == 2 and "is not an m2v-search index manifest" in one_line(err)
        assert json.loads((app / "manifest.json").read_text()) == {"name": "my app", "version": 3}
    damaged = tmp_path / "damaged"  # not JSON at all: no index, so --force is needed, and it rebuilds
    damaged.mkdir()
    (damaged / "manifest.json").write_text("not json")
    code, _, err = run(capsys, "build", source, "-o", damaged, "--model", tiny_model_folder, "--quiet")
    assert code == 2 and "holds no index" in one_line(err)
    code, out, _ = run(capsys, "build", source, "-o", damaged, "--model", tiny_model_folder, "--quiet", "--force")
    assert code == 0 and json.loads(out)["documents"] == 10


def test_a_killed_writers_leftovers_do_not_make_the_folder_foreign(tmp_path: Path, tiny_model_folder: Path,
                                                                   capsys) -> None:
    """Before: a build killed while committing left .index.<gen>.faiss.tmp and .pending markers, and both
    --resume and a plain rebuild were refused as 'not empty', so only --force (starting over) worked."""
    source = write_jsonl(tmp_path / "a.jsonl", rows("a", 10))
    out_dir = tmp_path / "kb"
    out_dir.mkdir()
    for name in (".index.000001-6143fb68.faiss.tmp", ".pending.000001-6143fb68.json",
                 ".manifest.json.tmp-4242", ".lock"):
        (out_dir / name).write_text("")
    code, out, _ = run(capsys, "build", source, "-o", out_dir, "--model", tiny_model_folder, "--quiet")
    assert code == 0 and json.loads(out)["documents"] == 10
    assert len(VectorIndex.open(out_dir)) == 10
    assert not [p.name for p in out_dir.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".pending")]


def test_output_must_be_new_empty_or_an_index(tmp_path: Path, tiny_model_folder: Path, capsys) -> None:
    source = write_jsonl(tmp_path / "a.jsonl", rows("a", 10))
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("keep me")
    (home / "index.old.faiss").write_text("not ours either")
    code, _, err = run(capsys, "build", source, "-o", home, "--model", tiny_model_folder, "--quiet")
    assert code == 2 and "not empty and holds no index" in one_line(err) and "--force" in err
    assert sorted(p.name for p in home.iterdir()) == ["index.old.faiss", "notes.txt"]  # not even a .lock
    code, out, _ = run(capsys, "build", source, "-o", home, "--model", tiny_model_folder, "--quiet", "--force")
    assert code == 0 and json.loads(out)["documents"] == 10
    assert (home / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "file.txt"
    a_file.write_text("a file")
    code, _, err = run(capsys, "build", source, "-o", a_file, "--model", tiny_model_folder, "--quiet")
    assert code == 2 and "is a file" in one_line(err) and a_file.read_text() == "a file"
    code, _, err = run(capsys, "build", source, "-o", a_file / "sub", "--model", tiny_model_folder, "--quiet")
    assert code in (2, 3, 7) and "file.txt" in one_line(err) and a_file.read_text() == "a file"


# ---------------------------------------------------------------------- 2. links planted in the directory
@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
def test_a_planted_lock_is_refused_never_written_through(built: Path, tmp_path: Path, capsys, kind: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("do not truncate")
    lock = built / ".lock"
    lock.unlink()
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "hardlink":
        os.link(victim, lock)
    else:
        os.mkfifo(lock)
    change = write_jsonl(tmp_path / "c.jsonl", rows("c", 2))
    for command in (["add", built, change], ["delete", built, "a-1"]):
        code, _, err = run(capsys, *command, "--quiet")
        assert code == 4 and ".lock" in one_line(err) and "refus" in err
    assert victim.read_text() == "do not truncate"
    assert len(VectorIndex.open(built)) == 60


def test_docstore_file_is_created_exclusively(tmp_path: Path) -> None:
    from m2v_search.index.docstore import DocStore
    from m2v_search.index.errors import UnsafeFileError

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    store = DocStore.in_memory()
    store.insert([(0, "a", "text", "{}", "h")])
    (tmp_path / "link.sqlite").symlink_to(victim)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        store.save_to(tmp_path / "link.sqlite")
    with pytest.raises(FileExistsError):
        store.save_to(victim)
    assert victim.read_text() == "keep"
    store.save_to(tmp_path / "new.sqlite")
    assert DocStore.open_file(tmp_path / "new.sqlite").count() == 1


# ---------------------------------------------------------------------- 7. NaN and Infinity
@pytest.mark.parametrize(("value", "shown"), [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"),
                                              ("1e999", "Infinity")])
def test_nan_and_infinity_in_metadata_are_refused_at_their_line(built: Path, tmp_path: Path, capsys, value: str,
                                                                shown: str) -> None:
    bad = tmp_path / "nan.jsonl"
    bad.write_text('{"id": "n1", "text": "fine"}\n'
                   f'{{"id": "n2", "text": "fine", "metadata": {{"scores": [1, {value}]}}}}\n')
    code, _, err = run(capsys, "add", built, bad, "--quiet")
    line = one_line(err)
    assert code == 3 and "nan.jsonl: line 2" in line and "'scores[1]'" in line and shown in line
    code, out, err = run(capsys, "add", built, bad, "--quiet", "--skip-invalid")
    assert code == 0 and json.loads(out)["added"] == 1 and json.loads(out)["skipped_invalid"] == 1
    code, out, _ = run(capsys, "search", built, "-q", "fine", "--filter", "g=1", "-k", "3")
    assert code == 0 and all(json.loads(line) for line in out.splitlines())  # filters still work
    assert run(capsys, "verify", built)[0] == 0


def test_nan_in_metadata_refused_through_the_python_api(tiny_model) -> None:
    from m2v_search.index.docstore import metadata_json

    index = VectorIndex.create(None, tiny_model)
    with pytest.raises(ValueError, match=r"records\[1\].*field 'a.b' is NaN"):
        index.upsert([{"id": "1", "text": "x"}, {"id": "2", "text": "y", "metadata": {"a": {"b": float("nan")}}}])
    with pytest.raises(ValueError, match="'x' is -Infinity"):
        metadata_json({"x": float("-inf")})
    deep: dict = {}
    cursor = deep
    for _ in range(500):
        cursor["k"] = {}
        cursor = cursor["k"]
    with pytest.raises(ValueError, match="nested more than 100 levels"):
        metadata_json(deep)
    assert len(index) == 0


# ---------------------------------------------------------------------- 8. counts and checked numbers
@pytest.mark.parametrize("size", ["0", "-1", "x"])
def test_batch_size_must_be_positive(built: Path, tmp_path: Path, capsys, size: str) -> None:
    change = write_jsonl(tmp_path / "c.jsonl", rows("c", 2))
    for command in (["add", built, change], ["build", change, "-o", tmp_path / "new"]):
        with pytest.raises(SystemExit) as stop:
            main([str(a) for a in command] + ["--batch-size", size])
        assert stop.value.code == 2 and "--batch-size" in capsys.readouterr().err
    assert len(VectorIndex.open(built)) == 60


def test_duplicate_ids_are_counted_and_the_later_record_wins(tmp_path: Path, tiny_model_folder: Path,
                                                             capsys) -> None:
    source = tmp_path / "dup.jsonl"
    source.write_text('{"id": 1, "text": "first one"}\n{"id": "2", "text": "two"}\n{"id": "1", "text": "string one"}\n'
                      '{"id": "2", "text": "two again"}\n{"id": "3", "text": "three"}\n')
    code, out, err = run(capsys, "build", source, "-o", tmp_path / "i", "--model", tiny_model_folder,
                         "--batch-size", "2")
    summary = json.loads(out)
    assert code == 0 and summary["documents"] == 3
    assert summary["duplicate_ids"] == 2 and summary["id_type_collisions"] == 1
    assert "line 3: id '1' appeared earlier" in err and "integer id and a string id" in err
    assert "the later record" in err
    index = VectorIndex.open(tmp_path / "i")
    assert [r.text for r in index.get(["1", "2"])] == ["string one", "two again"]
    index.close()
    code, out, _ = run(capsys, "add", tmp_path / "i", source, "--quiet")  # within one batch
    assert code == 0 and json.loads(out)["duplicate_ids"] == 2 and json.loads(out)["documents"] == 3


@pytest.mark.parametrize("argv", [["--nprobe", "-3"], ["--nprobe", "0"], ["--ef-search", "99999999999"],
                                  ["-k", "0"], ["-k", "99999999999999999999"], ["--threads", "-2"]])
def test_search_numbers_are_checked_while_parsing(built: Path, capsys, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["search", str(built), "-q", "x", *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and argv[0] in err and "Traceback" not in err


# ---------------------------------------------------------------------- text that is not text
@pytest.mark.parametrize("line", [
    '{"id": "a\\ud800", "text": "x"}',
    '{"id": "s1", "text": "broken \\udfff text"}',
    '{"id": "s2", "text": "x", "metadata": {"k": "\\ud83d"}}',
    '{"id": "s3", "text": "x", "metadata": {"\\ud800": 1}}',
    '{"id": "s4", "text": "x", "tag": "\\udc80"}',
])
def test_lone_surrogates_are_bad_input(built: Path, tmp_path: Path, capsys, line: str) -> None:
    bad = tmp_path / "s.jsonl"
    bad.write_text('{"id": "ok", "text": "fine"}\n' + line + "\n", encoding="ascii")
    code, _, err = run(capsys, "add", built, bad, "--quiet")
    assert code == 3 and "s.jsonl: line 2" in one_line(err) and "lone surrogate" in err
    code, out, err = run(capsys, "add", built, bad, "--quiet", "--skip-invalid")
    assert code == 0 and json.loads(out)["skipped_invalid"] == 1 and json.loads(out)["added"] == 1


@pytest.mark.parametrize(("line", "field"), [
    ('{"id": "n1", "text": "x", "metadata": {"k": "a\\u0000b"}}', "field 'k'"),
    ('{"id": "n2", "text": "x", "metadata": {"k\\u0000": 1}}', "key 'k\\x00'"),
    ('{"id": "n3", "text": "x", "tags": ["ok", "\\u0000"]}', "field 'tags[1]'"),
])
def test_a_nul_in_metadata_is_bad_input_at_its_line(built: Path, tmp_path: Path, capsys, line: str,
                                                     field: str) -> None:
    bad = tmp_path / "n.jsonl"
    bad.write_text('{"id": "ok", "text": "fine"}\n' + line + "\n", encoding="ascii")
    code, _, err = run(capsys, "add", built, bad, "--quiet")
    assert code == 3 and "n.jsonl: line 2" in one_line(err) and field in err and "NUL" in err
    assert "Traceback" not in err
    code, out, err = run(capsys, "add", built, bad, "--quiet", "--skip-invalid")
    assert code == 0 and json.loads(out)["skipped_invalid"] == 1 and json.loads(out)["added"] == 1


def test_surrogates_in_arguments_and_through_the_api(built: Path, capsys, tiny_model) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["search", str(built), "-q", "bad \udcff query"])
    assert stop.value.code == 2 and "not valid UTF-8" in capsys.readouterr().err
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable.encode(), b"-m", b"m2v_search.index", b"search", str(built).encode(),
                             b"-q", b"caf\xe9"], capture_output=True, env=env, timeout=120)
    assert result.returncode == 2 and b"not valid UTF-8" in result.stderr and b"Traceback" not in result.stderr
    index = VectorIndex.create(None, tiny_model)
    with pytest.raises(ValueError, match="lone surrogate"):
        index.upsert([{"id": "x", "text": "a \ud800 b"}])
    with pytest.raises(ValueError, match="lone surrogate"):
        index.upsert([{"id": "\ud800", "text": "fine"}])


def test_deeply_nested_json(built: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "deep.jsonl"
    bad.write_text('{"id": "d1", "text": "x", "m": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
                   '{"id": "d2", "text": "x", "m": ' + "[" * 300 + "]" * 300 + "}\n")
    code, _, err = run(capsys, "add", built, bad, "--quiet")
    assert code == 3 and "deep.jsonl: line 1: JSON nested too deeply" in one_line(err)
    code, out, err = run(capsys, "add", built, bad, "--quiet", "--skip-invalid")
    assert code == 0 and json.loads(out)["skipped_invalid"] == 2 and "nested more than 100 levels" in err
    with pytest.raises(SystemExit) as stop:
        main(["search", str(built), "-q", "x", "--filter-json", "[" * 100_000 + "]" * 100_000])
    assert stop.value.code == 2 and "nested too deeply" in capsys.readouterr().err


# ---------------------------------------------------------------------- the system says no
def test_an_io_error_reading_the_corpus_is_one_line(built: Path, capsys) -> None:
    code, _, err = run(capsys, "add", built, "/proc/self/mem", "--quiet")  # reading it at offset 0 fails with EIO
    assert code == 7 and "/proc/self/mem: line 1: cannot read the corpus" in one_line(err)
    assert "input/output error" in err.lower()


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


needs_mount = pytest.mark.skipif(sys.platform != "linux" or not _unshare_works(),
                                 reason="needs a user namespace to mount a small or read-only tmpfs")


def _in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env,
                          timeout=300)


@needs_mount
def test_full_disk_and_read_only_file_system(built: Path, tmp_path: Path, tiny_model_folder: Path) -> None:
    source = write_jsonl(tmp_path / "big.jsonl", [{"id": f"r{i}", "text": "x" * 2000} for i in range(300)])
    mount = tmp_path / "mnt"
    mount.mkdir()
    python = f"{sys.executable} -m m2v_search.index"
    result = _in_namespace(
        f"mount -t tmpfs -o size=256k tmpfs {mount} && cp -r {built} {mount}/idx && "
        f"{python} add {mount}/idx {source} --quiet; echo rc=$?; "
        f"{python} verify {mount}/idx; echo rc=$?; "
        f"mount -o remount,ro {mount} && {python} add {mount}/idx {source} --quiet; echo rc=$?; "
        f"{python} build {source} -o {mount}/new --model {tiny_model_folder} --quiet; echo rc=$?")
    out, err = result.stdout, result.stderr
    assert "Traceback" not in err, err
    codes = [line for line in out.splitlines() if line.startswith("rc=")]
    assert codes[0] == "rc=7" and "disk is full" in err, (out, err)
    assert codes[1] == "rc=0" and '"ok": true' in out  # the index survived the full disk
    assert codes[2] == "rc=7" and codes[3] == "rc=7" and "read-only" in err, (out, err)
    assert len([line for line in err.splitlines() if "error:" in line]) == 3


# ---------------------------------------------------------------------- an index without a model
def test_text_commands_on_an_index_of_external_vectors(tmp_path: Path, capsys) -> None:
    directory = tmp_path / "ext"
    index = VectorIndex.create(directory, dim=8)
    index.upsert([{"id": "v1", "text": "one"}], vectors=np.ones((1, 8), np.float32))
    index.save()
    index.close()
    for command in (["search", directory, "-q", "x"], ["add", directory, write_jsonl(tmp_path / "c.jsonl", rows("c", 1))]):
        code, _, err = run(capsys, *command, "--quiet")
        line = one_line(err)
        assert code == 6 and "vectors computed elsewhere" in line and "VectorIndex" in line
    assert run(capsys, "verify", directory)[0] == 0 and run(capsys, "delete", directory, "v1", "--quiet")[0] == 0


# ---------------------------------------------------------------------- output
def test_table_format_escapes_control_characters(tmp_path: Path, tiny_model_folder: Path, capsys) -> None:
    source = write_jsonl(tmp_path / "t.jsonl", [{"id": "line\nbreak\tid", "text": "a text\nwith\ttabs \x1b[31mred"},
                                                {"id": "plain", "text": "another text"}])
    assert main(["build", str(source), "-o", str(tmp_path / "i"), "--model", str(tiny_model_folder), "--quiet"]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "search", tmp_path / "i", "-q", "a text with tabs", "-k", "2", "--format", "table")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4  # query, header, two hits: nothing broke a line
    assert "line\\nbreak\\tid" in out and "a text\\nwith\\ttabs \\x1b[31mred" in out and "\x1b" not in out
    code, out, _ = run(capsys, "search", tmp_path / "i", "-q", "a text", "-k", "2")
    assert "line\nbreak\tid" in [json.loads(line)["id"] for line in out.splitlines()]  # JSON keeps the exact id


def test_table_columns_line_up_for_wide_and_combining_characters() -> None:
    # Before: cells were padded and cut by characters, so a CJK id pushed its row's text 1 column
    # right per character, and a cut could fall inside the column budget of a wide character.
    import unicodedata

    from m2v_search.cli.index_read import hits_table

    class Hit:
        def __init__(self, id_: str) -> None:
            self.id, self.text, self.score, self.metadata = id_, "text after the id", 0.5, {}

    table = hits_table([Hit("日本語のIDです長い長い長い長い長い"), Hit("plain"), Hit("e\u0301toile")])

    def columns(text: str) -> int:
        return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
                   for c in text)
    starts = {columns(line[:line.index("text after")]) for line in table.splitlines()[1:]}
    assert starts == {4 + 2 + 6 + 2 + 24 + 2} and "…" in table


def test_jsonl_output_escapes_line_separators_c1_and_bidi_controls(tmp_path: Path, tiny_model_folder: Path,
                                                                  capsys) -> None:
    # Before: U+2028, U+0085 and U+009B (CSI) went out raw: valid JSON, but str.splitlines() cut the
    # record in two and a terminal acted on the control.
    text = "first\u2028second \u0085 next \u009b31m red \u202e reversed caf\u00e9"
    source = write_jsonl(tmp_path / "t.jsonl", [{"id": "odd\u2029id", "text": text}, {"id": "b", "text": "other"}])
    assert main(["build", str(source), "-o", str(tmp_path / "i"), "--model", str(tiny_model_folder), "--quiet"]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "search", tmp_path / "i", "-q", "first second", "-k", "2")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(records) == 2 and {"odd\u2029id", "b"} == {r["id"] for r in records}
    assert text in [r["text"] for r in records] and "caf\u00e9" in out  # exact values back; plain letters kept
    assert not any(c in out for c in "\u2028\u2029\u0085\u009b\u202e")


def test_search_options_the_index_kind_does_not_use_are_named_as_ignored(tmp_path: Path, tiny_model_folder: Path,
                                                                       capsys) -> None:
    # Before: --nprobe on a flat or HNSW index, or --rescore on a float index, changed nothing and said nothing.
    source = write_jsonl(tmp_path / "t.jsonl", rows("a", 30))
    assert main(["build", str(source), "-o", str(tmp_path / "i"), "--model", str(tiny_model_folder), "--quiet"]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "search", tmp_path / "i", "-q", "a document 3", "-k", "2", "--nprobe", "4",
                         "--rescore", "50")
    assert code == 0 and len(out.splitlines()) == 2
    assert "--nprobe applies to ivf and ivf-pq indexes; this one is flat: ignored" in err
    assert "--rescore applies to binary and binary-hnsw indexes" in err and "--ef-search" not in err
    code, _, err = run(capsys, "search", tmp_path / "i", "-q", "a document 3", "-k", "2")
    assert code == 0 and "ignored" not in err


# ---------------------------------------------------------------------- found while trying more
def test_huge_ef_search_is_clamped_to_the_index_size(tmp_path: Path, tiny_model_folder: Path, capsys) -> None:
    """--ef-search 2147483647 used to make FAISS allocate 16 GB (86 s) for a 30-vector HNSW index."""
    import resource

    directory = tmp_path / "hnsw"
    assert main(["build", str(write_jsonl(tmp_path / "a.jsonl", rows("a", 30))), "-o", str(directory), "--index",
                 "hnsw", "--model", str(tiny_model_folder), "--quiet"]) == 0
    capsys.readouterr()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    result = subprocess.run([sys.executable, "-m", "m2v_search.index", "search", str(directory), "-q", "a document 3",
                             "-k", "2", "--ef-search", "2147483647"], capture_output=True, text=True, env=env,
                            timeout=120, preexec_fn=limit_memory)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["--filter-json", '{"a": NaN}'], "a is nan"),
    (["--filter-json", '{"a": {"$in": [1, Infinity]}}'], "a.$in.1 is inf"),
    (["--filter", "a=1e999"], "a is inf"),
])
def test_non_finite_filter_values_are_refused(built: Path, capsys, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["search", str(built), "-q", "x", *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and "finite" in err


def test_a_number_too_large_for_sqlite_is_bad_input(built: Path, capsys) -> None:
    code, _, err = run(capsys, "search", built, "-q", "x", "--filter", "g=99999999999999999999999999")
    line = one_line(err)  # SQLite's OverflowError, or the filter's own check naming the 64-bit range
    assert code == 3 and ("too large" in line or "64-bit" in line)


def test_a_line_longer_than_the_limit_is_refused_without_reading_it_whole(built: Path, tmp_path: Path,
                                                                          capsys) -> None:
    import gzip

    from m2v_search.index.corpus import MAX_LINE_BYTES

    bomb = tmp_path / "bomb.jsonl.gz"  # ~70 KB on disk, one line of 65 MiB
    bomb.write_bytes(gzip.compress(b'{"id": "x", "text": "' + b"a" * (MAX_LINE_BYTES + 1024) + b'"}\n'
                                   b'{"id": "after", "text": "a normal line"}\n', 1))
    code, _, err = run(capsys, "add", built, bomb, "--quiet")
    assert code == 3 and "line 1: longer than 64 MiB" in one_line(err)
    code, out, _ = run(capsys, "add", built, bomb, "--quiet", "--skip-invalid")
    summary = json.loads(out)
    assert code == 0 and summary["skipped_invalid"] == 1 and summary["added"] == 1
    assert VectorIndex.open(built).get(["after"])[0].text == "a normal line"


@pytest.mark.parametrize(("signal_name", "code", "said"), [("SIGINT", 130, "interrupted"),
                                                         ("SIGTERM", 143, "terminated (SIGTERM)")])
def test_a_build_stopped_by_a_signal_is_one_line_and_keeps_everything(built: Path, tiny_model_folder: Path,
                                                                      signal_name: str, code: int, said: str) -> None:
    """Ctrl-C (SIGINT) or `kill` (SIGTERM) during a build: one line, exit 130 / 143, the index and
    the checkpoint kept, no temporary file left (SIGTERM used to kill it at once, leaving them)."""
    import signal
    import time

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONFAULTHANDLER": "1",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-m", "m2v_search.index", "build", "-", "-o", str(built), "--model",
                                str(tiny_model_folder), "--batch-size", "10", "--checkpoint-every", "10", "--quiet"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               # a test run started in the background (`make test &`) has SIGINT ignored, and
                               # the build would inherit that: give it the default a terminal's Ctrl-C meets
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def stuck(what: str) -> None:  # every thread's stack (faulthandler on SIGABRT), to say where it waited
        process.send_signal(signal.SIGABRT)
        pytest.fail(f"{what}; the build's stderr:\n{process.communicate(timeout=60)[1].decode()}")

    try:
        process.stdin.write("".join(json.dumps(r) + "\n" for r in rows("s", 30)).encode())
        process.stdin.flush()  # then the build waits for more input
        deadline = time.monotonic() + 120
        while not (built / ".build" / "manifest.json").exists():
            if time.monotonic() > deadline:
                stuck("no checkpoint within 120 s")
            time.sleep(0.1)
        process.send_signal(getattr(signal, signal_name))
        try:
            process.wait(timeout=60)  # stdin stays open until it exits: an EOF must not end the build first
        except subprocess.TimeoutExpired:
            stuck(f"still running 60 s after {signal_name}")
        process.stdin.close()
        err = process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code and "Traceback" not in err
    assert f"{said}; the index on disk is unchanged; the same command with --resume continues" in one_line(err)
    assert len(VectorIndex.open(built)) == 60 and (built / ".build" / "build.json").exists()
    assert not [p.name for p in built.rglob("*.tmp*")]


@pytest.mark.parametrize("redirect", ["full", "closed"])
def test_stdout_full_or_closed(built: Path, redirect: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "m2v_search.index", "search", str(built), "-q", "x", "-k", "3"]
    if redirect == "full":
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full")
        with open("/dev/full", "w") as full:
            result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
        expected = "disk is full"
    else:
        result = subprocess.run(["sh", "-c", '"$@" >&-', "sh", *command], stderr=subprocess.PIPE, text=True, env=env,
                                timeout=120)
        expected = "standard output is closed"
    assert result.returncode == 7 and expected in one_line(result.stderr) and "Traceback" not in result.stderr


def test_add_or_delete_on_a_mistyped_directory_creates_nothing(tmp_path: Path, capsys) -> None:
    source = write_jsonl(tmp_path / "a.jsonl", rows("a", 2))
    for command in (["add", tmp_path / "typo", source], ["delete", tmp_path / "typo", "x"]):
        code, _, err = run(capsys, *command, "--quiet")
        assert code == 2 and "does not exist" in one_line(err)
        assert not (tmp_path / "typo").exists()


def test_an_interrupted_add_does_not_offer_resume(built: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Only a build can continue with --resume; an interrupted add says the index is unchanged."""
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(VectorIndex, "upsert", interrupt)
    code, _, err = run(capsys, "add", built, write_jsonl(tmp_path / "more.jsonl", rows("m", 3)), "--quiet")
    assert code == 130
    assert one_line(err).endswith("interrupted; the index on disk is unchanged")
    monkeypatch.undo()
    assert len(VectorIndex.open(built)) == 60


def test_a_byte_order_mark_on_a_blank_first_line_is_a_blank_line(tmp_path: Path, tiny_model_folder: Path,
                                                                capsys) -> None:
    """Notepad saves UTF-8 with a byte-order mark; a file whose first line is otherwise blank was
    refused as 'line 1: invalid JSON'."""
    corpus = tmp_path / "bom.jsonl"
    corpus.write_bytes(b"\xef\xbb\xbf\r\n" + "".join(json.dumps(row) + "\r\n" for row in rows("a", 3)).encode())
    code, out, err = run(capsys, "build", corpus, "-o", tmp_path / "idx", "--model", tiny_model_folder, "--quiet")
    assert code == 0, err
    assert json.loads(out)["documents"] == 3


@pytest.mark.parametrize("kind", ["zstd", "bzip2", "xz"])
def test_a_corpus_in_another_compression_is_named_as_such(tmp_path: Path, tiny_model_folder: Path, capsys,
                                                          kind: str) -> None:
    """Before: a .zst corpus was reported as 'line 1: not valid UTF-8 (byte 0xb5 ...)'."""
    import bz2
    import lzma

    data = b'{"id": "a", "text": "hello"}\n'
    compressed = {"zstd": lambda d: b"\x28\xb5\x2f\xfd" + d, "bzip2": bz2.compress, "xz": lzma.compress}[kind](data)
    source = tmp_path / "c.jsonl.compressed"
    source.write_bytes(compressed)
    code, _, err = run(capsys, "build", source, "-o", tmp_path / "out", "--model", tiny_model_folder, "--quiet")
    assert code == 3 and f"is {kind}-compressed; only gzip is read" in one_line(err) and "c.jsonl.compressed" in err


@pytest.mark.parametrize("command", [["delete", "a-1"], ["reindex", "--lexical"]])
def test_force_model_is_refused_where_nothing_is_encoded(built: Path, command: list[str], capsys) -> None:
    """`delete ... --model OTHER --force-model` once saved the index bound to OTHER, though no vector
    was encoded with it: every later search encoded queries with the wrong model."""
    manifest = (built / "manifest.json").read_bytes()
    with pytest.raises(SystemExit) as stop:
        run(capsys, command[0], built, *command[1:], "--model", "m2v-base-v1", "--force-model")
    assert stop.value.code == 2 and "encodes nothing" in capsys.readouterr().err
    assert (built / "manifest.json").read_bytes() == manifest


def test_reindex_keeps_the_lexical_language_unless_one_is_given(tmp_path: Path, tiny_model_folder: Path,
                                                                 capsys) -> None:
    """`reindex --lexical` once rebuilt a German lexical part as English."""
    directory = tmp_path / "idx"
    corpus = write_jsonl(tmp_path / "a.jsonl", rows("a", 20))
    assert run(capsys, "build", corpus, "-o", directory, "--model", tiny_model_folder, "--lexical-language",
               "german", "--quiet")[0] == 0
    for extra, language in (([], "german"), (["--lexical-language", "french"], "french"), ([], "french")):
        code, out, _ = run(capsys, "reindex", directory, "--lexical", *extra)
        assert code == 0 and json.loads(out)["language"] == language
        assert VectorIndex.open(directory).lexical.analyzer.language == language
