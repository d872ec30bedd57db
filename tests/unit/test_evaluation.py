"""The evaluation: metric functions against hand-checked values, set conversion, gold chunks, a full run."""

from __future__ import annotations

import json
import math

import pytest

from evaluation import metrics as m
from evaluation.__main__ import main as evaluation_main
from evaluation.runner import GoldChunks, evaluate, sample_questions
from evaluation.sets import Evidence, Question, QuestionSetError, convert_financebench, convert_squad, read_jsonl
from rag.answering.answer import Answerer
from rag.search.retrieval import Retriever
from tests.fakes import FakeEmbedder, FakeLLM, fake_ingestor

# --- metrics, hand-checked ---------------------------------------------------------------------------


def test_normalization_follows_squad_in_both_languages():
    assert m.normalize_answer("The  Eiffel-Tower!", "en") == "eiffel tower"
    assert m.normalize_answer("« La tour d'Eiffel »", "fr") == "tour eiffel"


def test_exact_match_and_f1():
    assert m.exact_match("the Eiffel Tower.", ["Eiffel tower"]) == 1.0
    assert m.exact_match("Eiffel", ["Eiffel tower"]) == 0.0
    # prediction "eiffel tower paris" vs "eiffel tower": precision 2/3, recall 1 -> F1 0.8
    assert m.token_f1("Eiffel Tower, Paris", ["the Eiffel Tower"]) == pytest.approx(0.8)
    assert m.token_f1("nothing shared", ["Eiffel tower"]) == 0.0
    assert m.token_f1("x", ["no", "x"]) == 1.0  # best reference counts


def test_rouge_l_uses_the_longest_common_subsequence():
    # pred: a b c d (after dropping nothing) vs ref: a c d e -> LCS "a c d" = 3; P 3/4, R 3/4 -> 0.75
    assert m.rouge_l("w1 w2 w3 w4", ["w1 w3 w4 w5"]) == pytest.approx(0.75)
    assert m.rouge_l("", ["x"]) == 0.0


def test_containment_is_on_word_boundaries():
    assert m.contains_reference("It opened in 1889 [1].", ["1889"]) == 1.0
    assert m.contains_reference("It opened in 18890.", ["1889"]) == 0.0
    assert m.contains_reference("Elle a ouvert en 1889.", ["en 1889"], "fr") == 1.0


def test_numbers_and_numeric_match():
    assert m.numbers_in("revenue $1,234.5 million, down (12)% and -3") == [1234.5, -12.0, -3.0]
    assert m.numeric_match("The ratio is 0.66.", ["0.66"]) == 1.0
    assert m.numeric_match("about 66%", ["0.66"]) == 1.0  # a ratio written as a percentage
    assert m.numeric_match("0.70", ["0.66"]) == 0.0
    assert m.numeric_match("65.4", ["65.4%"]) == 1.0
    assert m.numeric_match("anything", ["Yes, it grew"]) is None


def test_ranking_metrics():
    ranked = ["a", "b", "c", "d"]
    assert m.first_relevant_rank(ranked, {"c"}) == 2
    assert (m.recall_at(ranked, {"c"}, 1), m.recall_at(ranked, {"c"}, 3)) == (0.0, 1.0)
    assert m.reciprocal_rank(ranked, {"c", "d"}) == pytest.approx(1 / 3)
    assert m.reciprocal_rank(ranked, {"z"}) == 0.0
    # gold {b, z}: DCG = 1/log2(3); ideal with 2 gold = 1 + 1/log2(3)
    assert m.ndcg_at(ranked, {"b", "z"}, 10) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m.ndcg_at(ranked, {"a"}, 10) == 1.0


def test_mean_and_percentile_skip_missing_values():
    assert m.mean([1.0, None, 3.0]) == 2.0 and m.mean([None]) is None
    assert m.percentile([5, 1, 3, 2, 4], 50) == 3 and m.percentile([5, 1, 3, 2, 4], 95) == 5


# --- question sets ---------------------------------------------------------------------------------------

SQUAD = {
    "data": [
        {
            "title": f"Article {i}",
            "paragraphs": [
                {
                    "context": f"Paragraph of article {i}. The answer number {i} is here.",
                    "qas": [
                        {
                            "id": f"q{i}",
                            "question": f"Which answer does article {i} give?",
                            "answers": [{"text": f"answer number {i}", "answer_start": 0}],
                        },
                        {"id": f"empty{i}", "question": "no answer", "answers": []},
                    ],
                }
            ],
        }
        for i in range(10)
    ]
}


def test_squad_conversion_writes_one_document_per_article_and_holds_some_out(tmp_path):
    source = tmp_path / "squad.json"
    source.write_text(json.dumps(SQUAD), encoding="utf-8")
    questions = read_jsonl(convert_squad(source, tmp_path / "out", holdout=0.2, seed=1))
    files = sorted(p.name for p in (tmp_path / "out" / "corpus").iterdir())
    assert len(files) == 8 and all(f.endswith(".txt") for f in files)
    assert len(questions) == 10  # the question without an answer is skipped
    unanswerable = [q for q in questions if not q.answerable]
    assert len(unanswerable) == 2
    assert all(q.evidence[0].document not in files for q in unanswerable)
    assert all(q.evidence[0].document in files for q in questions if q.answerable)
    assert questions[0].evidence[0].text == questions[0].answers[0] == "answer number 0"


def test_financebench_conversion_makes_pages_one_based_and_links_the_pdfs(tmp_path):
    folder = tmp_path / "fb"
    (folder / "pdfs").mkdir(parents=True)
    (folder / "pdfs" / "ACME_2020_10K.pdf").write_bytes(b"%PDF-1.4 fake")
    row = {
        "financebench_id": "fb1",
        "doc_name": "ACME_2020_10K",
        "question": "What was revenue?",
        "answer": "$10",
        "evidence": [{"doc_name": "ACME_2020_10K", "evidence_page_num": 4}],
    }
    (folder / "questions.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    [q] = read_jsonl(convert_financebench(folder, tmp_path / "out"))
    assert q.evidence == [Evidence("ACME_2020_10K.pdf", 5, None)] and q.answerable
    assert (tmp_path / "out" / "corpus" / "ACME_2020_10K.pdf").is_symlink()


def test_a_malformed_question_line_is_named(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "ok"}\n{"answers": []}\n', encoding="utf-8")
    with pytest.raises(QuestionSetError, match=r"q.jsonl, line 2"):
        read_jsonl(path)


def test_sampling_is_seeded_and_keeps_both_kinds():
    qs = [Question(str(i), "q", answerable=i % 4 != 0) for i in range(40)]
    a = sample_questions(qs, 5, 2, seed=3)
    assert a == sample_questions(qs, 5, 2, seed=3)
    assert sum(q.answerable for q in a) == 5 and sum(not q.answerable for q in a) == 2


# --- gold chunks and a run over a real store (fake embedder, fake model) -------------------------------------


@pytest.fixture
def eval_store(settings, corpus):
    ingestor = fake_ingestor(settings)[0]
    ingestor.run([corpus])
    settings.retrieval.min_similarity = 0.0
    return ingestor.store


def test_gold_chunks_match_document_and_text_or_page(eval_store):
    gold = GoldChunks(eval_store)
    by_text = gold.of(Question("1", "q", ["47 minutes"], [Evidence("incident-postmortem.html", None, "47 minutes")]))
    assert by_text and all("47 minutes" in eval_store.records([c])[c][0] for c in by_text)
    by_page = gold.of(Question("2", "q", ["x"], [Evidence("politique-teletravail.pdf", 2, None)]))
    metas = {cid: meta for cid, meta in eval_store.iter_metadatas()}
    assert by_page and all(metas[c]["page"] == 2 for c in by_page)
    assert not gold.of(Question("3", "q", ["x"], [Evidence("other.txt", None, "47 minutes")]))


def test_a_run_scores_retrieval_answers_citations_and_abstention(settings, eval_store):
    questions = [
        Question(
            "a",
            "How long did the storage outage last?",
            ["47 minutes"],
            [Evidence("incident-postmortem.html", None, "47 minutes")],
        ),
        Question(
            "u",
            "Who won the 1998 football world cup?",
            ["France"],
            [Evidence("left-out.txt", None, "France")],
            answerable=False,
        ),
    ]
    retriever = Retriever(eval_store, FakeEmbedder(), settings)
    gold = GoldChunks(eval_store).of(questions[0])
    first_gold = next(p.chunk_id for p in retriever.search(questions[0].question) if p.chunk_id in gold)
    rank = [p.chunk_id for p in retriever.search(questions[0].question)].index(first_gold) + 1
    llm = FakeLLM([f"The outage lasted 47 minutes [{rank}].", "I could not find the answer in the documents."])
    result = evaluate(settings, eval_store, retriever, questions, Answerer(settings, retriever, llm))
    answered, declined = result.rows
    assert answered["contains"] == 1.0 and answered["valid_citation"] == 1.0 and not answered["declined"]
    assert answered["citation_precision"] == 1.0 and answered["cited"] == [rank]
    assert declined["declined"] and "em" not in declined
    s = result.summary
    assert s["abstention"] == {"unanswerable_declined": 1.0, "answerable_declined": 0.0}
    assert s["citations"]["valid_citation"] == 1.0 and s["retrieval"]["recall@10"] == 1.0
    assert s["corpus"]["documents"] == 5
    # the cuts in force are recorded: the reranker's own when the settings leave them empty
    assert settings.retrieval.min_rerank_score is None and s["settings"]["min_rerank_score"] == 0.1
    assert s["settings"]["min_passage_relevance"] == 0.0


def test_the_command_runs_retrieval_only_on_a_jsonl_set(tmp_path, settings, corpus, monkeypatch, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps(
            {
                "id": "a",
                "question": "outage minutes",
                "answers": ["47 minutes"],
                "evidence": [{"document": "incident-postmortem.html", "text": "47 minutes"}],
            }
        )
        + "\n",
        encoding="utf-8",
    )
    import evaluation.__main__ as cli
    import ingest.pipeline
    import rag.models.embedding

    monkeypatch.setattr(ingest.pipeline, "build_ingestor", lambda s, progress=None: fake_ingestor(s)[0])
    monkeypatch.setattr(rag.models.embedding, "load_embedder", lambda s, info=None: FakeEmbedder())
    monkeypatch.setattr(cli, "REPO", tmp_path)
    out = tmp_path / "report.json"
    code = evaluation_main(
        [
            str(questions),
            "--corpus",
            str(corpus),
            "--retrieval-only",
            "--workdir",
            str(tmp_path / "runs"),
            "--out",
            str(out),
            "--modes",
            "hybrid",
            "keyword",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report["results"]) == {"hybrid", "keyword"}
    assert report["results"]["keyword"]["summary"]["retrieval"]["recall@10"] == 1.0
    assert "recall@5" in capsys.readouterr().out


def test_the_command_refuses_a_jsonl_set_without_its_corpus(tmp_path, capsys):
    (tmp_path / "q.jsonl").write_text("", encoding="utf-8")
    assert evaluation_main([str(tmp_path / "q.jsonl"), "--retrieval-only"]) == 2
    assert "--corpus" in capsys.readouterr().err


def test_the_follow_up_set_holds_30_pairs_whose_evidence_is_in_the_sample_documents():
    from evaluation.followups import load_set, summarize
    from ingest.discover import SUPPORTED_SUFFIXES
    from ingest.readers import read_document
    from rag.answering.answer import detect_language
    from tests.conftest import SAMPLE_DATA

    rows = load_set()
    assert len(rows) == 30
    languages = [detect_language(r["history"][0]["question"] + " " + r["question"]) for r in rows]
    assert languages.count("en") == 17 and languages.count("fr") == 13
    for row in rows:
        [evidence] = row["evidence"]
        path = SAMPLE_DATA / evidence["document"]
        text = " ".join(p.text for p in read_document(path, SUPPORTED_SUFFIXES[path.suffix]).pages)
        assert evidence["text"] in text, evidence
    fake = [
        {"language": "en", "rewrite_s": 1.0, "ranks": {"concatenated": 0, "alone": None, "rewritten": 2}},
        {"language": "fr", "rewrite_s": 2.0, "ranks": {"concatenated": 5, "alone": 0, "rewritten": None}},
    ]
    summary = summarize(fake, 4)
    assert summary["all"]["concatenated"] == {"recall@4": 0.5, "recall@1": 0.5}
    assert summary["fr"]["alone"] == {"recall@4": 1.0, "recall@1": 1.0}
    assert summary["rewrite_seconds"] == {"median": 1.5, "max": 2.0}


def test_a_question_whose_answer_fails_is_a_row_and_the_run_goes_on(settings, eval_store):
    from rag.errors import ModelCrashError

    class CrashOnce(FakeLLM):
        def stream(self, prompt, max_tokens=None, decoding=None, cancel=None, grammar=None):
            if not self.crashed:
                self.crashed = True
                raise ModelCrashError("the model process stopped: SIGSEGV (Segmentation fault); it is being restarted")
            yield from super().stream(prompt, max_tokens, decoding, cancel, grammar)

    settings.llm.answer_style = "free"
    question = Question("a", "How long did the storage outage last?", ["47 minutes"], [])
    questions = [question, Question("b", question.question, ["47 minutes"], [])]
    retriever = Retriever(eval_store, FakeEmbedder(), settings)
    llm = CrashOnce(["The outage lasted 47 minutes [1]."])
    llm.crashed = False
    result = evaluate(settings, eval_store, retriever, questions, Answerer(settings, retriever, llm))
    failed, answered = result.rows
    assert failed["error"].startswith("ModelCrashError: the model process stopped: SIGSEGV")
    assert "error" not in answered and answered["contains"] == 1.0
    assert result.summary["errors"]["questions"] == 1 and result.summary["errors"]["first"][0].startswith("a: ")
    assert result.summary["answers"]["contains"] == 1.0  # scored over the question answered
