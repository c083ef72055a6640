"""Training on teacher outputs: a tiny real corpus, the real teacher, a few steps."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from m2v_search import StaticModel  # noqa: E402
from m2v_search.train import corpus as corpus_module  # noqa: E402
from m2v_search.train.featurize import PROGRESS_FILE, Teacher, featurize, load_features  # noqa: E402
from m2v_search.train.fit import FitOptions, fit  # noqa: E402
from m2v_search.train.sif import sif_weights, token_counts  # noqa: E402


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """~300 real sentences: stdlib docstrings and STS-B train sentences."""
    docstrings = list(corpus_module.stdlib_docstrings())[:200]
    return docstrings + list(corpus_module.stsb_train_sentences())[:100]


@pytest.fixture(scope="module")
def teacher(teacher_folder) -> Teacher:
    return Teacher(teacher_folder, device="cpu")


@pytest.fixture(scope="module")
def features(texts, teacher, tmp_path_factory):
    folder = featurize(texts, teacher, tmp_path_factory.mktemp("features"), shard_size=128, batch_size=64,
                       show_progress_bar=False)
    return load_features(folder)


def test_teacher_matches_sentence_transformers(teacher, teacher_folder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(teacher_folder), device="cpu")
    sentences = ["A man is playing a guitar.", "Return the absolute value of the argument."]
    expected = reference.encode(sentences, convert_to_numpy=True)
    np.testing.assert_allclose(teacher.encode(sentences), expected, atol=2e-5)


def test_featurize_resumes_after_interruption(texts, teacher, features, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = Teacher.embed

    def failing(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:  # shard 0 took two batches of 64; die inside shard 1
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Teacher, "embed", failing)
    with pytest.raises(KeyboardInterrupt):
        featurize(texts, teacher, tmp_path, shard_size=128, batch_size=64, show_progress_bar=False)
    progress = json.loads((tmp_path / PROGRESS_FILE).read_text())
    assert progress["done"] == [0]
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(ValueError, match="unfinished"):
        load_features(tmp_path)
    shard0 = (tmp_path / "shard_00000.npy").stat().st_mtime_ns

    counted = {"n": 0}

    def counting(self, batch):
        counted["n"] += len(batch)
        return original(self, batch)

    monkeypatch.setattr(Teacher, "embed", counting)
    featurize(texts, teacher, tmp_path, shard_size=128, batch_size=64, show_progress_bar=False)
    assert counted["n"] == len(texts) - 128  # only the unfinished shards were embedded again
    assert (tmp_path / "shard_00000.npy").stat().st_mtime_ns == shard0
    np.testing.assert_allclose(load_features(tmp_path), features, atol=1e-5)


def test_featurize_in_bfloat16_records_the_type_and_agrees_with_float32(texts, teacher_folder, features, tmp_path):
    folder = featurize(texts[:64], teacher_folder, tmp_path, device="cpu", dtype="bfloat16", shard_size=32,
                       batch_size=32, show_progress_bar=False)
    progress = json.loads((folder / PROGRESS_FILE).read_text())
    assert progress["dtypes"] == {"0": "bfloat16", "1": "bfloat16"}
    cosines = np.sum(load_features(folder) * features[:64], axis=1)
    assert cosines.min() > 0.99


def test_featurize_refuses_other_texts(texts, teacher, features, tmp_path):
    featurize(texts[:10], teacher, tmp_path, shard_size=128, show_progress_bar=False)
    with pytest.raises(ValueError, match="other texts"):
        featurize(texts[10:20], teacher, tmp_path, shard_size=128, show_progress_bar=False)


def test_featurize_refuses_a_folder_another_process_is_featurizing_into(texts, teacher, tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import sys; from m2v_search.index.locking import WriterLock; "
                               f"WriterLock({str(tmp_path)!r}).acquire(); print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match=f"feature folder {tmp_path} is locked by another writer .*pid {holder.pid}"):
            featurize(texts[:10], teacher, tmp_path, shard_size=128, show_progress_bar=False)
        assert not (tmp_path / PROGRESS_FILE).exists()
    finally:
        holder.communicate("")
    featurize(texts[:10], teacher, tmp_path, shard_size=128, show_progress_bar=False)  # free again once it exits
    assert json.loads((tmp_path / PROGRESS_FILE).read_text())["done"] == [0]


def test_fit_loss_falls_and_model_saves_reloads_encodes(texts, features, tiny_model, tmp_path):
    result = fit(tiny_model, texts, features, FitOptions(loss="cosine", epochs=4, batch_size=32, learning_rate=1e-2,
                                                         patience=10, device="cpu", validation_fraction=0.2,
                                                         show_progress_bar=False))
    losses = [row["train_loss"] for row in result.history[1:]]
    assert losses[-1] < losses[0]
    assert result.best_validation >= result.initial_validation
    model = result.model
    assert model.dim == tiny_model.dim and model.vocabulary_size == tiny_model.vocabulary_size
    model.config["recipe"] = {"loss": "cosine", "corpus": "test"}
    model.save_pretrained(tmp_path / "trained")
    reloaded = StaticModel.from_pretrained(tmp_path / "trained")
    vectors = reloaded.encode(["A man is playing a guitar.", "Return the absolute value."])
    assert vectors.shape == (2, tiny_model.dim) and np.isfinite(vectors).all()
    np.testing.assert_allclose(vectors, model.encode(["A man is playing a guitar.", "Return the absolute value."]),
                               atol=1e-5)
    assert "Return the absolute value" not in (tmp_path / "trained" / "README.md").read_text()
    assert "loss" in (tmp_path / "trained" / "README.md").read_text()


def test_fit_contrastive_with_sif_weights(texts, features, tiny_model):
    weights = sif_weights(token_counts(tiny_model, texts), 1e-3)
    assert weights.shape == (tiny_model.vocabulary_size,) and weights.max() == 1.0 and weights.min() < 1.0
    options = FitOptions(loss="contrastive", epochs=2, batch_size=32, max_steps=5, device="cpu",
                         validation_fraction=0.2, show_progress_bar=False)
    result = fit(tiny_model, texts, features, options, token_weights=weights)
    assert np.isfinite(result.model.embedding).all()
    assert len(result.history) >= 2


def test_fit_bad_input(texts, features, tiny_model):
    with pytest.raises(ValueError, match="target rows"):
        fit(tiny_model, texts, features[:-1], FitOptions(device="cpu"))
    with pytest.raises(ValueError, match="loss"):
        fit(tiny_model, texts, features, FitOptions(loss="mse", device="cpu"))
    with pytest.raises(ValueError, match="pca_dims"):
        fit(tiny_model, texts, features, FitOptions(pca_dims=10_000, device="cpu", show_progress_bar=False))


def test_corpus_round_trip_and_errors(tmp_path):
    path = tmp_path / "corpus.txt.gz"
    manifest = corpus_module.build_corpus(path, ["stsb-train"], max_texts_per_source=50)
    assert manifest["texts"] == 50 and "licence" in manifest["sources"]["stsb-train"]
    texts = corpus_module.read_corpus(path)
    assert len(texts) == 50 and all(texts)
    with pytest.raises(ValueError, match="unknown corpus source"):
        corpus_module.build_corpus(tmp_path / "x.txt", ["wordnet"])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\xff\xfe broken\n")
    with pytest.raises(ValueError, match="bad.txt"):
        corpus_module.read_corpus(bad)


def test_cli_train_end_to_end(texts, teacher_folder, tiny_model_folder, tmp_path, capsys):
    from m2v_search.cli import main
    from m2v_search.cli.exit_codes import EXIT_BAD_INPUT

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts[:80]) + "\n", encoding="utf-8")
    out = tmp_path / "trained"
    code = main(["train", str(teacher_folder), "--corpus", str(corpus), "-o", str(out), "--init",
                 str(tiny_model_folder), "--device", "cpu", "--epochs", "1", "--max-steps", "3", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "held-out pair Spearman" in capsys.readouterr().out
    model = StaticModel.from_pretrained(out)
    assert model.embedding_dtype == "float16" and model.dim == 32
    assert "whitened" in model.config["recipe"]["post-processing"]
    assert np.isfinite(model.encode(["A man is playing a guitar."])).all()
    assert (tmp_path / "trained.work" / "features" / PROGRESS_FILE).exists()
    assert main(["train", str(teacher_folder), "--corpus", str(tmp_path / "missing.txt"), "-o", str(out),
                 "--init", str(tiny_model_folder)]) == EXIT_BAD_INPUT
    assert "missing.txt" in capsys.readouterr().err


def test_whiten_folds_into_table(texts, tiny_model):
    from m2v_search.train.whiten import whiten

    whitened = whiten(tiny_model, texts)
    outputs = whitened.encode(texts, normalize=False)
    assert np.abs(outputs.mean(0)).max() < 1e-3  # centred over the corpus
    covariance = np.cov(outputs.T)
    np.testing.assert_allclose(np.diag(covariance), 1.0, atol=0.05)
    with pytest.raises(ValueError, match="more than"):
        whiten(tiny_model, texts[:5])


# ---------------------------------------------------------------- the parts of fit: student, loop, early stopping
@pytest.fixture(scope="module")
def corpus_tokens(texts, tiny_model):
    from m2v_search.train.tokens import tokenize_corpus

    return tokenize_corpus(tiny_model, texts)


def test_student_pools_and_folds_like_a_static_model(texts, tiny_model, corpus_tokens):
    from m2v_search.train.student import StudentModel

    weights = sif_weights(token_counts(tiny_model, texts), 1e-3)
    student = StudentModel(tiny_model.embedding, corpus_tokens, 8, token_weights=weights, device="cpu")
    rows = np.flatnonzero(corpus_tokens.lengths > 0)
    weighted = StaticModel(tiny_model.embedding, tiny_model.tokenizer, weights=weights)
    expected = weighted.encode([texts[i] for i in rows], normalize=False)
    np.testing.assert_allclose(student.pool(rows).detach().numpy(), expected, atol=1e-5)
    # head (random here) and token weights fold into one table that mean pooling reads back
    folded = StaticModel(student.folded_table(), tiny_model.tokenizer)
    np.testing.assert_allclose(folded.encode([texts[i] for i in rows], normalize=False), student.predict(rows),
                               atol=1e-4)
    with pytest.raises(ValueError, match="one weight per token"):
        StudentModel(tiny_model.embedding, corpus_tokens, 8, token_weights=weights[:-1])


def test_student_head_starts_at_the_least_squares_map(tiny_model, corpus_tokens):
    import torch

    from m2v_search.train.student import StudentModel

    student = StudentModel(tiny_model.embedding, corpus_tokens, 5, device="cpu")
    rows = np.flatnonzero(corpus_tokens.lengths > 0)
    mapping = np.random.default_rng(0).standard_normal((tiny_model.dim, 5)).astype(np.float32)
    targets = torch.zeros(corpus_tokens.text_count, 5)
    targets[rows] = student.pool(rows).detach() @ torch.from_numpy(mapping)
    student.fit_head(rows, targets)
    np.testing.assert_allclose(student.head.weight.detach().numpy().T, mapping, atol=1e-3)
    state = student.snapshot()
    with torch.no_grad():
        student.bag.weight.add_(1.0)
    student.restore(state)
    np.testing.assert_array_equal(student.bag.weight.detach().numpy(), tiny_model.embedding)


def test_early_stopping_keeps_the_best_and_counts_patience():
    from m2v_search.train.early_stopping import EarlyStopping

    snapshots = []
    state = {"epoch": 0}

    def snapshot():
        snapshots.append(state["epoch"])
        return dict(state)

    stopper = EarlyStopping(2, 0.1, snapshot)
    decisions = []
    for epoch, score in enumerate([0.2, 0.15, 0.3, 0.25, 0.2, 0.9], start=1):
        state["epoch"] = epoch
        decisions.append(stopper.update(epoch, score))
        if decisions[-1]:
            break
    assert decisions == [False, False, False, False, True]
    assert (stopper.best_epoch, stopper.best_score, stopper.best_state) == (3, 0.3, {"epoch": 3})
    assert snapshots == [0, 1, 3]  # a copy only at the start and at each improvement
    nan_start = EarlyStopping(1, float("nan"), dict)
    assert not nan_start.update(1, 0.0) and nan_start.best_epoch == 1
    assert nan_start.update(2, float("nan"))
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(0, 0.0, dict)


def test_batch_loss():
    import torch

    from m2v_search.train.loop import batch_loss

    x = torch.randn(6, 4)
    assert float(batch_loss(x, 2 * x, "cosine")) == pytest.approx(0.0, abs=1e-6)
    assert float(batch_loss(x, -x, "cosine")) == pytest.approx(2.0, abs=1e-6)
    aligned = float(batch_loss(x, x, "contrastive", temperature=0.05))
    shuffled = float(batch_loss(x, x[torch.tensor([1, 2, 3, 4, 5, 0])], "contrastive", temperature=0.05))
    assert aligned < shuffled
    with pytest.raises(ValueError, match="unknown loss"):
        batch_loss(x, x, "mse")


def _learnable_problem(tiny_model, corpus_tokens):
    """A student started from the tiny table, with targets that another table produces exactly."""
    import torch

    from m2v_search.train.student import StudentModel

    rows = np.flatnonzero(corpus_tokens.lengths > 0)
    hidden = StudentModel(np.random.default_rng(7).standard_normal(tiny_model.embedding.shape), corpus_tokens, 16)
    targets = torch.zeros(corpus_tokens.text_count, 16)
    targets[rows] = hidden(rows).detach()
    student = StudentModel(tiny_model.embedding, corpus_tokens, 16, device="cpu")
    student.fit_head(rows, targets)
    return student, targets, rows


def test_loop_lowers_the_loss_and_respects_max_steps(tiny_model, corpus_tokens):
    from m2v_search.train.fit import FitOptions
    from m2v_search.train.loop import MONITOR, train

    student, targets, rows = _learnable_problem(tiny_model, corpus_tokens)
    before = student.snapshot()
    validate = lambda: {MONITOR: -float(((student.predict(rows) - targets[rows].numpy()) ** 2).mean())}  # noqa: E731
    options = FitOptions(epochs=4, batch_size=32, learning_rate=1e-2, patience=4, show_progress_bar=False)
    result = train(student, targets, rows, validate, options)
    losses = [row["train_loss"] for row in result.history[1:]]
    assert len(result.history) == 5 and losses[-1] < losses[0]
    assert result.best_validation > result.initial_validation and result.best_epoch > 0
    assert result.best_validation == pytest.approx(validate()[MONITOR])  # left at the best epoch

    student.restore(before)
    short = train(student, targets, rows, validate, FitOptions(epochs=6, batch_size=32, max_steps=3,
                                                               show_progress_bar=False))
    assert short.steps == 3 and len(short.history) == 2  # stopped inside epoch 1


def test_loop_stops_early_and_restores_the_best_state(tiny_model, corpus_tokens):
    from m2v_search.train.fit import FitOptions
    from m2v_search.train.loop import MONITOR, train

    student, targets, rows = _learnable_problem(tiny_model, corpus_tokens)
    start = student.folded_table()
    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])  # every epoch scores worse than the start
    result = train(student, targets, rows, lambda: {MONITOR: next(scores)},
                   FitOptions(epochs=5, batch_size=32, learning_rate=1e-2, patience=2, show_progress_bar=False))
    assert [row["epoch"] for row in result.history] == [0, 1, 2] and result.best_epoch == 0
    np.testing.assert_allclose(student.folded_table(), start, atol=1e-6)  # back at epoch 0


def test_featurize_refuses_another_teacher_but_not_a_moved_one(texts, teacher_folder, tmp_path):
    """Shards are tied to the teacher that wrote them (config and weight files), not to its path."""
    import shutil

    moved = tmp_path / "moved-teacher"
    shutil.copytree(teacher_folder, moved)
    featurize(texts[:10], teacher_folder, tmp_path / "features", shard_size=128, show_progress_bar=False)
    featurize(texts[:10], moved, tmp_path / "features", shard_size=128, show_progress_bar=False)  # same teacher
    config = json.loads((moved / "config.json").read_text(encoding="utf-8"))
    (moved / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.5}), encoding="utf-8")
    with pytest.raises(ValueError, match="another teacher"):
        featurize(texts[:10], moved, tmp_path / "features", shard_size=128, show_progress_bar=False)
