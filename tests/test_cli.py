"""The CLI package: `m2v index ...` is `m2v-index ...`, one exit-code table, no abbreviations,
registering a command, light imports."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from m2v_search.cli import index_main, main
from m2v_search.cli.exit_codes import (
    EXIT_BUSY,
    EXIT_CORRUPT,
    EXIT_ERROR,
    EXIT_INPUT,
    EXIT_MODEL,
    EXIT_SYSTEM,
    EXIT_USAGE,
    UsageError,
    describe,
    exit_code_for,
    exit_code_table,
)

ROOT = Path(__file__).parents[1]


def corpus(path: Path, n: int = 40) -> Path:
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i} on topic {i % 5}", "g": i % 2}) + "\n"
                            for i in range(n)), encoding="utf-8")
    return path


def test_m2v_index_is_m2v_index_command(tmp_path: Path, tiny_model_folder: Path, capsys) -> None:
    source = corpus(tmp_path / "c.jsonl")
    outputs = {}
    for name, run in (("a", lambda a: main(["index", *a])), ("b", index_main)):
        directory = tmp_path / name
        assert run(["build", str(source), "-o", str(directory), "--model", str(tiny_model_folder), "--quiet"]) == 0
        build = json.loads(capsys.readouterr().out)
        assert run(["search", str(directory), "-q", "document 7 on topic 2", "-k", "3"]) == 0
        hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert run(["search", str(directory), "-q", "x"]) == 0 and run(["info", str(directory), "--format", "json"]) == 0
        capsys.readouterr()
        outputs[name] = (build["documents"], build["factory"], [(h["id"], h["score"]) for h in hits])
    assert outputs["a"] == outputs["b"] and outputs["a"][0] == 40 and outputs["a"][2][0][0] == "d7"
    # the same errors, the same codes
    for run in (lambda a: main(["index", *a]), index_main):
        assert run(["search", str(tmp_path / "missing"), "-q", "x"]) == EXIT_USAGE
        assert "does not exist" in capsys.readouterr().err


def test_python_m_entry_points_and_errors_as_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for module in (["m2v_search.index"], ["m2v_search.cli", "index"]):
        result = subprocess.run([sys.executable, "-m", *module, "info", str(tmp_path / "nope")], capture_output=True,
                                text=True, env=env, timeout=120)
        assert result.returncode == EXIT_USAGE and "does not exist" in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [
    ["search", "DIR", "-q", "x", "--mod", "m"],          # --mod is neither --mode nor --model
    ["search", "DIR", "-q", "x", "--ef", "3"],           # --ef is not --ef-search
    ["build", "c.jsonl", "-o", "DIR", "--check", "5"],   # --check is not --checkpoint-every
])
def test_no_abbreviations(argv: list[str], capsys) -> None:
    for run in (index_main, lambda a: main(["index", *a])):
        with pytest.raises(SystemExit) as stop:
            run(argv)
        assert stop.value.code == EXIT_USAGE and "unrecognized arguments" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distill", "teacher", "-o", "out", "--pca", "8"])
    assert "unrecognized arguments: --pca" in capsys.readouterr().err


@pytest.mark.parametrize(("error", "code"), [
    ("IndexNotFoundError", EXIT_USAGE),
    ("CorpusError", EXIT_INPUT),
    ("IndexCorruptError", EXIT_CORRUPT),
    ("IndexLockedError", EXIT_BUSY),
    ("IndexConflictError", EXIT_BUSY),
    ("ModelMismatchError", EXIT_MODEL),
    ("NoModelError", EXIT_MODEL),
])
def test_index_errors_map_through_the_table(error: str, code: int) -> None:
    import m2v_search.index.errors as errors

    assert exit_code_for(getattr(errors, error)("x")) == code


def test_exit_code_table_follows_the_hierarchy() -> None:
    import errno

    from m2v_search.errors import HubUnavailableError, InvalidInputError, M2VSearchError, ModelLoadError

    class NewInputError(InvalidInputError):  # a class another module might add later
        pass

    class NewCorruptError(__import__("m2v_search.index.errors").index.errors.IndexCorruptError):
        pass

    assert exit_code_for(HubUnavailableError("x")) == exit_code_for(ModelLoadError("x")) == EXIT_MODEL
    assert exit_code_for(NewInputError("x")) == exit_code_for(M2VSearchError("x")) == EXIT_INPUT
    assert exit_code_for(NewCorruptError("x")) == EXIT_CORRUPT
    assert exit_code_for(UsageError("x")) == EXIT_USAGE
    assert exit_code_for(FileNotFoundError(2, "No such file", "c.jsonl")) == EXIT_INPUT
    full = OSError(errno.ENOSPC, "No space left on device", "/data/idx")
    assert exit_code_for(full) == exit_code_for(PermissionError(13, "x")) == EXIT_SYSTEM
    assert "disk is full" in describe(full) and "/data/idx" in describe(full)
    assert exit_code_for(RecursionError()) == exit_code_for(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "x")) \
        == EXIT_INPUT
    assert exit_code_for(RuntimeError("boom")) == exit_code_for(KeyError("k")) == EXIT_ERROR
    assert "--debug" in describe(RuntimeError("boom")) and "\n" not in describe(RuntimeError("a\nb"))
    codes = [code for _, code in exit_code_table()]
    assert set(codes) <= {2, 3, 4, 5, 6, 7, 130}
    documented = (ROOT / "docs" / "notes" / "cli.md").read_text(encoding="utf-8")
    for code in sorted(set(codes) | {0, 1}):
        assert f"| {code} " in documented, f"exit code {code} is not in docs/notes/cli.md"


def test_unexpected_error_is_one_line_and_debug_shows_traceback(capsys, monkeypatch) -> None:
    from m2v_search.cli.app import run
    from m2v_search.cli.registry import CommandGroup

    group = CommandGroup("tool", "a test group")

    @group.command("boom", help="raise a bug")
    def boom(args: argparse.Namespace) -> int:
        raise KeyError("not a documented error")

    parser = group.build_parser()
    assert run(parser, ["boom"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("tool boom: error: unexpected KeyError") and "--debug" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(KeyError):
        run(parser, ["boom", "--debug"])
    monkeypatch.setenv("M2V_DEBUG", "1")
    with pytest.raises(KeyError):
        run(parser, ["boom"])


def test_interrupt_is_exit_130_with_the_group_hint(capsys) -> None:
    from m2v_search.cli.app import run
    from m2v_search.cli.registry import CommandGroup

    for hint in ("", "the index on disk is unchanged"):
        group = CommandGroup("tool", "a test group", interrupt_hint=hint)

        @group.command("wait", help="wait")
        def wait(args: argparse.Namespace) -> int:
            raise KeyboardInterrupt

        assert run(group.build_parser(), ["wait"]) == 130
        assert capsys.readouterr().err == f"tool wait: interrupted{'; ' + hint if hint else ''}\n"


def test_registering_a_command_takes_a_few_lines(capsys) -> None:
    from m2v_search.cli.app import run
    from m2v_search.cli.options import bounded_int
    from m2v_search.cli.registry import CommandGroup

    group = CommandGroup("tool", "a test group")

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--port", type=bounded_int(1, 65535), default=8000)

    @group.command("serve", help="serve", options=("common", "model"), arguments=arguments)
    def serve(args: argparse.Namespace) -> int:
        print(json.dumps({"port": args.port, "model": args.model, "quiet": args.quiet}))
        return 0

    assert run(group.build_parser(), ["serve", "--port", "81", "--model", "m", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out) == {"port": 81, "model": "m", "quiet": True}
    with pytest.raises(SystemExit):
        run(group.build_parser(), ["serve", "--port", "0"])
    assert "must be between 1 and 65535" in capsys.readouterr().err
    with pytest.raises(ValueError, match="registered twice"):
        group.command("serve", help="again")(serve)
    with pytest.raises(ValueError, match="unknown option sets"):
        group.command("other", help="x", options=("nope",))


def test_importing_the_cli_stays_light() -> None:
    code = ("import sys, m2v_search.cli.app as app; app.build_parser('m2v'); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'faiss', 'torch', 'transformers'}); "
            "print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_serve_is_an_index_subcommand(tmp_path: Path, capsys) -> None:
    """`m2v-index serve` is registered; a directory without an index is a usage error, one line."""
    with pytest.raises(SystemExit) as help_exit:
        index_main(["serve", "--help"])
    assert help_exit.value.code == 0
    assert "--api-key-env" in capsys.readouterr().out
    assert index_main(["serve", str(tmp_path / "missing"), "--port", "0"]) == EXIT_USAGE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_interrupt_hint_offers_resume_only_where_resume_works() -> None:
    # Before: a Dask build, or one into s3://..., was told "the same command with --resume continues",
    # and that command then refused --resume.
    import argparse

    from m2v_search.cli.app import _resumable

    def build(**fields: object) -> argparse.Namespace:
        return argparse.Namespace(resume=False, engine="local", output="idx", **fields)

    assert _resumable(build())
    assert not _resumable(argparse.Namespace(**{**vars(build()), "engine": "dask"}))
    assert not _resumable(argparse.Namespace(**{**vars(build()), "output": "s3://bucket/idx"}))
    assert not _resumable(argparse.Namespace(output="idx"))  # a command without --resume


def test_a_signal_after_the_commit_says_the_change_is_on_disk(monkeypatch) -> None:
    # Before: SIGTERM while add/delete/reindex cleaned up after the new manifest was in place said
    # "the index on disk is unchanged" (the change was there) and offered --resume.
    import argparse
    from pathlib import Path

    from m2v_search.cli import app
    from m2v_search.index import generations

    local, remote = argparse.Namespace(output="/tmp/idx"), argparse.Namespace(output="s3://bucket/idx")
    monkeypatch.setattr(generations, "COMMITTED", {Path("/tmp/idx/.build")})
    assert not app._committed(local)  # a build's checkpoint is not the index
    monkeypatch.setattr(generations, "COMMITTED", {Path("/tmp/idx/.build"), Path("/tmp/idx")})
    assert app._committed(local)
    assert not app._committed(remote)  # a URL output's local work folder: the upload may not have finished

    def interrupted(args: argparse.Namespace) -> int:
        generations.COMMITTED.add(Path("/tmp/idx"))  # the command committed, then the signal came
        raise KeyboardInterrupt

    parser = argparse.ArgumentParser(prog="m2v-index")
    parser.set_defaults(run=interrupted, command_parser=parser, command_name="m2v-index add",
                        interrupt_hint="the index on disk is unchanged", resume=False)
    import io
    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = app.run(parser, [])
    assert code == 130 and "its change was committed before the signal" in err.getvalue()
    assert "unchanged" not in err.getvalue() and "--resume" not in err.getvalue()


def test_the_librarys_warnings_are_one_log_line_in_the_cli(capsys) -> None:
    # Before: `m2v distill --pca-dims 512` printed Python's "path/pca.py:40: UserWarning: ..." and the
    # source line, even with --quiet.
    import os
    import warnings

    from m2v_search.cli import app

    with app._logging_to_stderr("m2v", quiet=True, verbose=False):
        warnings.showwarning("pca_dims=512 is larger than the number of tokens", UserWarning,
                             f"{os.sep}x{os.sep}m2v_search{os.sep}distill{os.sep}pca.py", 40)
    err = capsys.readouterr().err
    assert err == "m2v: pca_dims=512 is larger than the number of tokens\n"
    assert warnings.showwarning is not None and "one_line" not in getattr(warnings.showwarning, "__name__", "")


def test_ctrl_c_while_the_commands_load_is_one_line(monkeypatch, capsys) -> None:
    # Before: SIGINT ~50 ms after start (imports) printed a traceback ending in KeyboardInterrupt.
    from m2v_search import cli
    from m2v_search.cli import app

    def interrupted(argv: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(app, "index_main", interrupted)
    assert cli.index_main(["info", "x"]) == 130
    assert capsys.readouterr().err == "m2v-index: interrupted before it started; nothing was done\n"


def test_an_unknown_option_is_refused_with_the_subcommands_usage(capsys) -> None:
    # Before: `m2v encode --normalize` printed the top-level `m2v` usage line.
    import pytest

    from m2v_search.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["encode", "--normalize", "--text", "x"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "usage: m2v encode" in err
    assert "m2v encode: error: unrecognized arguments: --normalize" in err
