"""`m2v distill` through a real subprocess, on a small vocabulary subset of the teacher."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


def m2v(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "m2v_search.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_distill_small_vocabulary(teacher_folder, teacher_tokenizer, tmp_path):
    from m2v_search import StaticModel

    by_id = {i: t for t, i in teacher_tokenizer.get_vocab().items()}
    (tmp_path / "keep.txt").write_text("\n".join(by_id[i] for i in range(1996, 2196)) + "\n", encoding="utf-8")
    (tmp_path / "words.txt").write_text("xylophonist\n\nNew York\n", encoding="utf-8")
    (tmp_path / "corpus.txt").write_text("the cat and the dog\nof the people\n", encoding="utf-8")
    out = tmp_path / "static"
    result = m2v("distill", str(teacher_folder), "-o", str(out), "--keep-tokens", str(tmp_path / "keep.txt"),
                 "--vocabulary", str(tmp_path / "words.txt"), "--sif-corpus", str(tmp_path / "corpus.txt"),
                 "--pca-dims", "16", "--device", "cpu", "--quantize-to", "float32", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    model = StaticModel.from_pretrained(out)
    assert model.dim == 16 and model.embedding_dtype == "float32"
    assert model.tokenizer.token_to_id("xylophonist") is not None
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "2 custom words added" in card and "corpus texts" in card


def test_cli_distill_bad_input(tmp_path):
    result = m2v("distill", str(tmp_path / "missing-teacher"), "-o", str(tmp_path / "out"), "--device", "cpu")
    assert result.returncode == 6  # the one exit-code table: a model that cannot be loaded
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    result = m2v("distill", str(tmp_path), "-o", str(tmp_path / "out"), "--pca-dims", "many")
    assert result.returncode == 2 and "--pca-dims" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_without_command_shows_help():
    result = m2v()
    assert result.returncode == 2 and "distill" in result.stderr


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"])
def test_a_keep_tokens_file_without_tokens_is_named(content, teacher_folder, tmp_path, capsys):
    from m2v_search.cli import main

    keep = tmp_path / "keep.txt"
    keep.write_bytes(content)
    code = main(["distill", str(teacher_folder), "-o", str(tmp_path / "out"), "--keep-tokens", str(keep),
                 "--device", "cpu", "--no-progress"])
    error = capsys.readouterr().err
    assert code == 3, error
    assert error.count("\n") == 1 and str(keep) in error and "no tokens" in error, error
    assert not (tmp_path / "out").exists()


def test_a_byte_order_mark_is_no_part_of_the_first_line(tmp_path):
    from m2v_search.cli.distill import read_lines

    words = tmp_path / "words.txt"
    words.write_bytes("\ufeffxylophonist\r\nNew York\n".encode("utf-8"))  # as Windows Notepad saves UTF-8
    assert list(read_lines(words, "vocabulary file")) == ["xylophonist", "New York"]


def test_no_progress_silences_the_teachers_loading_bar_too(teacher_folder, tmp_path):
    (tmp_path / "keep.txt").write_text("hello\nworld\n", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("TQDM_DISABLE", None)
    result = subprocess.run([sys.executable, "-m", "m2v_search.cli", "distill", str(teacher_folder), "-o",
                             str(tmp_path / "out"), "--keep-tokens", str(tmp_path / "keep.txt"), "--pca-dims", "none",
                             "--device", "cpu", "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Loading weights" not in result.stderr and "it/s]" not in result.stderr


def test_cli_distill_token_context_and_pooling_reach_the_teacher(teacher_folder, teacher_tokenizer, tmp_path):
    """``--token-context both --pooling mean`` (Model2Vec's inputs) give other vectors than the default,
    and the model card says which inputs were used."""
    from m2v_search import StaticModel

    by_id = {i: t for t, i in teacher_tokenizer.get_vocab().items()}
    (tmp_path / "keep.txt").write_text("\n".join(by_id[i] for i in range(2000, 2100)) + "\n", encoding="utf-8")
    tables = {}
    for name, extra in (("default", []), ("both", ["--token-context", "both", "--pooling", "mean"])):
        result = m2v("distill", str(teacher_folder), "-o", str(tmp_path / name), "--keep-tokens",
                     str(tmp_path / "keep.txt"), "--pca-dims", "none", "--device", "cpu", "--quantize-to", "float32",
                     "--sif-coefficient", "none", "--no-progress", *extra)
        assert result.returncode == 0, result.stderr
        tables[name] = StaticModel.from_pretrained(tmp_path / name).embedding
    assert "[CLS] token [SEP]" in (tmp_path / "both" / "README.md").read_text(encoding="utf-8")
    assert tables["default"].shape == tables["both"].shape and not (tables["default"] == tables["both"]).all()
    result = m2v("distill", str(teacher_folder), "-o", str(tmp_path / "x"), "--token-context", "suffix")
    assert result.returncode != 0 and "--token-context" in result.stderr


def _fake_transformer(folder):
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["BertModel"], "model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(b"the teacher's weights")
    return folder


@pytest.mark.parametrize("command", ["distill", "train"])
def test_an_output_folder_holding_a_transformer_is_refused_before_any_work(command, teacher_folder, tmp_path,
                                                                           capsys):
    """Before: `m2v distill TEACHER -o TEACHER` (or train) replaced the teacher's weights, exit 0."""
    from m2v_search.cli import main

    target = _fake_transformer(tmp_path / "teacher-copy")
    extra = ["--corpus", str(tmp_path / "missing.txt")] if command == "train" else []
    with pytest.raises(SystemExit) as stopped:  # a usage error, while parsing
        main([command, str(teacher_folder), "-o", str(target), "--device", "cpu", "--no-progress", *extra])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and "holds a transformer model (config.json describes a bert transformer)" in error
    assert (target / "model.safetensors").read_bytes() == b"the teacher's weights"


def test_saving_a_static_model_over_a_transformer_is_refused(tiny_model, tmp_path):
    from m2v_search.errors import ModelLoadError

    target = _fake_transformer(tmp_path / "teacher")
    with pytest.raises(ModelLoadError, match="holds a transformer model .* choose another folder"):
        tiny_model.save_pretrained(target)
    assert (target / "model.safetensors").read_bytes() == b"the teacher's weights"
    tiny_model.save_pretrained(tmp_path / "static")
    tiny_model.save_pretrained(tmp_path / "static")  # a static model's own folder is saved over as before


def test_a_fifo_named_config_json_in_the_output_is_not_read(tmp_path):
    from m2v_search.persistence import transformer_in

    os.mkfifo(tmp_path / "config.json")
    os.mkfifo(tmp_path / "modules.json")
    assert transformer_in(tmp_path) is None  # before: reading it blocked the command line's parsing


def test_a_teacher_hub_id_says_the_cli_turned_downloads_off(tmp_path):
    # Before: "HF_HUB_OFFLINE is set" though the user had not set it (the CLI does), with no word on
    # how to allow downloads.
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    result = subprocess.run([sys.executable, "-m", "m2v_search.cli", "distill", "someone/some-model", "-o",
                             str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 6 and "HF_HUB_OFFLINE=0 allows downloads" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
