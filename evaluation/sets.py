"""Question sets: our own JSONL format, and converters from SQuAD (PIAF, COVID-QA) and FinanceBench.

One JSON object per line::

    {"id": "q1", "question": "...", "answers": ["..."], "answerable": true,
     "evidence": [{"document": "report.pdf", "page": 3, "text": "..."}]}

``document`` is a path relative to the corpus folder; ``page`` counts from 1 as the product shows it
(text formats have page 0); ``text`` is a string a gold chunk must contain. An evidence item with a
page but no text makes every chunk of that page gold (FinanceBench); with text but no page, every
chunk of the document that contains the text (SQuAD). Unanswerable questions (``answerable``: false)
are built honestly: questions about articles or filings left out of the corpus.

A converter writes ``questions.jsonl`` and a ``corpus/`` folder; the evaluation ingests that folder.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.errors import SourcierError


class QuestionSetError(SourcierError):
    """A question set that cannot be read (names the file and line)."""


@dataclass(frozen=True)
class Evidence:
    document: str
    page: int | None = None
    text: str | None = None


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    answerable: bool = True


def write_jsonl(questions: Iterable[Question], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps(asdict(q), ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[Question]:
    """Our question format; a malformed line is an error naming the file and line."""
    questions = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise QuestionSetError(f"{path}: cannot read the question set ({exc.strerror or exc})") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(
                Question(
                    id=str(row.get("id", number)),
                    question=str(row["question"]),
                    answers=[str(a) for a in row.get("answers", [])],
                    evidence=[
                        Evidence(str(e["document"]), e.get("page"), e.get("text")) for e in row.get("evidence", [])
                    ],
                    answerable=bool(row.get("answerable", True)),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise QuestionSetError(f"{path}, line {number}: not a question object ({exc})") from exc
    return questions


def _evidence(item: dict) -> Evidence:
    page = item.get("page")
    return Evidence(str(item["document"]), None if page is None else int(page), item.get("text"))


def held_out(names: list[str], share: float, seed: int) -> set[str]:
    """A seeded share of documents left out of the corpus; their questions become unanswerable."""
    count = round(len(names) * share)
    return set(random.Random(seed).sample(sorted(names), count)) if count else set()


def _slug(title: str) -> str:
    return re.sub(r"[^\w-]+", "-", title, flags=re.UNICODE).strip("-")[:60] or "article"


def convert_squad(source: Path, out: Path, holdout: float = 0.1, seed: int = 13) -> Path:
    """A SQuAD-format file -> one text document per article + questions.jsonl; returns the JSONL path."""
    try:
        articles = json.loads(source.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as exc:
        raise QuestionSetError(f"{source}: not a SQuAD-format file ({exc})") from exc
    corpus = _fresh_corpus(out)
    names = [f"{i:04}-{_slug(a.get('title', ''))}.txt" for i, a in enumerate(articles)]
    left_out = held_out(names, holdout, seed)
    questions = []
    for name, article in zip(names, articles, strict=True):
        if name not in left_out:
            text = "\n\n".join(p["context"] for p in article["paragraphs"])
            (corpus / name).write_text(text, encoding="utf-8")
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = list(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a["text"].strip()))
                if not answers or qa.get("is_impossible"):
                    continue
                questions.append(
                    Question(
                        id=str(qa.get("id", len(questions))),
                        question=qa["question"],
                        answers=answers,
                        evidence=[Evidence(name, None, a) for a in answers],
                        answerable=name not in left_out,
                    )
                )
    path = out / "questions.jsonl"
    write_jsonl(questions, path)
    return path


def convert_financebench(folder: Path, out: Path, holdout: float = 0.0, seed: int = 13) -> Path:
    """FinanceBench (questions.jsonl + pdfs/) -> our format; the corpus links to the PDFs (no copy)."""
    source = folder / "questions.jsonl"
    try:
        rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise QuestionSetError(f"{source}: not a FinanceBench question file ({exc})") from exc
    corpus = _fresh_corpus(out)
    pdfs = sorted((folder / "pdfs").glob("*.pdf"))
    left_out = held_out([p.name for p in pdfs], holdout, seed)
    for pdf in pdfs:
        if pdf.name not in left_out:
            (corpus / pdf.name).symlink_to(pdf.resolve())
    questions = []
    for row in rows:
        document = f"{row['doc_name']}.pdf"
        evidence = [
            Evidence(f"{e.get('doc_name', row['doc_name'])}.pdf", int(e["evidence_page_num"]) + 1, None)
            for e in row.get("evidence", [])
        ]
        questions.append(
            Question(
                id=row["financebench_id"],
                question=row["question"],
                answers=[row["answer"]],
                evidence=evidence,
                answerable=document not in left_out,
            )
        )
    path = out / "questions.jsonl"
    write_jsonl(questions, path)
    return path


def _fresh_corpus(out: Path) -> Path:
    corpus = out / "corpus"
    if corpus.exists():
        shutil.rmtree(corpus)
    corpus.mkdir(parents=True)
    return corpus
