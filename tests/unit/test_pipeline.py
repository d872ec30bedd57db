"""Incremental ingest against a real Chroma store (fake embedder): what a re-run does and does not do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.pipeline import IngestReport, ProgressListener
from rag.errors import SettingsError
from tests.conftest import make_settings
from tests.fakes import FAKE_INFO, fake_ingestor, store_snapshot

SAMPLES = {
    "bird-survey-2024.txt",
    "compost-guide.md",
    "incident-postmortem.html",
    "politique-teletravail.pdf",
    "travel-expenses.docx",
}


def clean_settings(tmp_path: Path):
    """A second store beside the first one (so folders get the same names in both)."""
    settings = make_settings(tmp_path)
    settings.paths.store_dir = tmp_path / "clean-store"
    return settings


def other_folder(tmp_path: Path) -> Path:
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("Other folder, other document.", encoding="utf-8")
    return other


def run(settings, target: Path, **kw) -> IngestReport:
    ingestor, _ = fake_ingestor(settings)
    return ingestor.run([target], **kw)


def metadatas(settings) -> list[dict]:
    ingestor, _ = fake_ingestor(settings)
    return [m for _, m in ingestor.store.iter_metadatas()]


def test_first_ingest_adds_every_sample_with_full_provenance(settings, corpus):
    report = run(settings, corpus)
    assert set(report.added) == SAMPLES and report.ok
    assert report.pages == 3 + 4  # three PDF pages, one "page" per other file
    metas = metadatas(settings)
    assert len(metas) == report.chunks_written > len(SAMPLES)
    by_source: dict[str, list[dict]] = {}
    for m in metas:
        by_source.setdefault(m["source"], []).append(m)
        assert m["root"] == "corpus"  # beside the store: named relative to the store's parent
        assert m["end"] > m["start"] >= 0 and len(m["file_hash"]) == 64
    assert {m["page"] for m in by_source["politique-teletravail.pdf"]} == {1, 2, 3}
    assert {m["page"] for m in by_source["compost-guide.md"]} == {0}
    for chunks in by_source.values():
        assert sorted(m["chunk_index"] for m in chunks) == list(range(len(chunks)))
        assert {m["n_chunks"] for m in chunks} == {len(chunks)}


def test_chunk_text_is_exactly_the_recorded_span_of_its_page(settings, corpus):
    from ingest.readers import read_document

    run(settings, corpus)
    ingestor, _ = fake_ingestor(settings)
    got = ingestor.store.collection.get(
        where={"source": "politique-teletravail.pdf"}, include=["documents", "metadatas"]
    )
    pages = {p.number: p.text for p in read_document(corpus / "politique-teletravail.pdf", "pdf").pages}
    for doc, m in zip(got["documents"], got["metadatas"], strict=True):
        assert pages[m["page"]][m["start"] : m["end"]] == doc


def test_unchanged_rerun_does_no_work_and_changes_nothing(settings, corpus):
    run(settings, corpus)
    ingestor, _ = fake_ingestor(settings)
    before = store_snapshot(ingestor.store)
    ingestor, embedder = fake_ingestor(settings)
    report = ingestor.run([corpus])
    assert set(report.unchanged) == SAMPLES
    assert report.added == report.updated == report.removed == []
    assert embedder.calls == [] and report.pages == 0 and report.chunks_written == 0
    assert store_snapshot(ingestor.store) == before


def test_changed_file_has_its_chunks_replaced_and_unchanged_chunks_kept(settings, corpus):
    run(settings, corpus)
    md = corpus / "compost-guide.md"
    md.write_text(
        md.read_text(encoding="utf-8") + "\n\n## Nouveau\n\nLes coquilles d'œufs broyées sont bienvenues.\n",
        encoding="utf-8",
    )
    ingestor, embedder = fake_ingestor(settings)
    report = ingestor.run([corpus])
    assert report.updated == ["compost-guide.md"] and len(report.unchanged) == 4
    assert 0 < report.chunks_written < 4  # only the chunks whose text changed are embedded again
    assert report.chunks_reused > 0
    docs = ingestor.store.collection.get(where={"source": "compost-guide.md"}, include=["documents", "metadatas"])
    assert any("coquilles" in d for d in docs["documents"])
    assert len({m["file_hash"] for m in docs["metadatas"]}) == 1
    # same content as a clean ingest of the new corpus
    clean = clean_settings(corpus.parent)
    run(clean, corpus)
    assert store_snapshot(fake_ingestor(clean)[0].store) == store_snapshot(ingestor.store)


def test_a_line_added_at_the_top_re_embeds_only_the_chunks_whose_text_changed(settings, tmp_path):
    docs = tmp_path / "long"
    docs.mkdir()
    paragraphs = [
        f"## Part {i}\n\nParagraph {i} talks about the harbour's crane number {i}, its load of {i * 7} tonnes, "
        f"the crew of shift {i % 5} and the weather on day {i}." * 3
        for i in range(40)
    ]
    md = docs / "long-report.md"
    md.write_text("# Harbour log\n\n" + "\n\n".join(paragraphs), encoding="utf-8")
    first = run(settings, docs)
    assert first.chunks_written >= 30
    md.write_text("# Harbour log\n\nEdited: one line added at the top.\n\n" + "\n\n".join(paragraphs))
    ingestor, embedder = fake_ingestor(settings)
    report = ingestor.run([docs])
    assert report.updated == ["long-report.md"]
    assert report.chunks_written <= 2 and sum(embedder.calls) <= 2  # the first chunk, maybe its neighbour
    assert report.chunks_reused >= first.chunks_written - 2
    # the moved chunks carry their new offsets: each is still exactly its span of the page
    text = md.read_text(encoding="utf-8")
    got = ingestor.store.collection.get(include=["documents", "metadatas"])
    for doc, meta in zip(got["documents"], got["metadatas"], strict=True):
        assert text[meta["start"] : meta["end"]] == doc
    clean = clean_settings(tmp_path)
    run(clean, docs)
    assert store_snapshot(fake_ingestor(clean)[0].store) == store_snapshot(ingestor.store)


def test_repeated_text_in_one_document_is_kept_once_per_occurrence(settings, tmp_path):
    docs = tmp_path / "rep"
    docs.mkdir()
    block = "Signature block: the parties agree to the terms above and sign below."
    filler = " ".join(f"clause{i}" for i in range(settings.chunking.chunk_tokens))  # a chunk of its own
    (docs / "contract.md").write_text(f"{block}\n\n{filler}\n\n{block}\n", encoding="utf-8")
    settings.chunking.context_tokens = 0
    report = run(settings, docs)
    texts = fake_ingestor(settings)[0].store.collection.get(include=["documents"])["documents"]
    assert texts.count(block) == 2 and report.chunks_written == len(texts)


def test_deleted_file_is_removed_unless_kept(settings, corpus):
    run(settings, corpus)
    (corpus / "bird-survey-2024.txt").unlink()
    kept = run(settings, corpus, keep_missing=True)
    assert kept.removed == [] and any(m["source"] == "bird-survey-2024.txt" for m in metadatas(settings))
    report = run(settings, corpus)
    assert report.removed == ["bird-survey-2024.txt"] and report.chunks_removed > 0
    assert all(m["source"] != "bird-survey-2024.txt" for m in metadatas(settings))


def test_dry_run_reports_changes_and_writes_nothing(settings, corpus):
    run(settings, corpus)
    (corpus / "bird-survey-2024.txt").unlink()
    (corpus / "new.txt").write_text("A new note about owls and their nests.", encoding="utf-8")
    (corpus / "compost-guide.md").write_text("Tout a changé.", encoding="utf-8")
    ingestor, embedder = fake_ingestor(settings)
    before = store_snapshot(ingestor.store)
    report = ingestor.run([corpus], dry_run=True)
    assert report.dry_run
    assert report.added == ["new.txt"] and report.updated == ["compost-guide.md"]
    assert report.removed == ["bird-survey-2024.txt"]
    assert embedder.calls == [] and store_snapshot(ingestor.store) == before


def test_other_roots_are_never_touched(settings, corpus, tmp_path):
    other = other_folder(tmp_path)
    run(settings, corpus)
    run(settings, other)
    report = run(settings, corpus)
    assert set(report.unchanged) == SAMPLES and report.removed == []
    assert any(m["source"] == "a.txt" for m in metadatas(settings))


def test_single_file_target_never_removes_its_neighbours(settings, corpus):
    run(settings, corpus)
    report = run(settings, corpus / "compost-guide.md")
    assert report.unchanged == ["compost-guide.md"] and report.removed == []
    assert {m["source"] for m in metadatas(settings)} == SAMPLES


def test_changing_chunk_settings_rechunks_every_file(tmp_path, corpus):
    run(make_settings(tmp_path, chunk_tokens=60), corpus)
    report = run(make_settings(tmp_path, chunk_tokens=40), corpus)
    assert set(report.updated) == SAMPLES
    assert all(m["n_chunks"] >= 1 for m in metadatas(make_settings(tmp_path)))


def test_chunk_size_above_the_model_limit_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="exceeds what the embedding model"):
        fake_ingestor(make_settings(tmp_path, chunk_tokens=FAKE_INFO.max_chunk_tokens + 1))


def test_embedding_is_batched_across_files_and_bounded(tmp_path):
    docs = tmp_path / "many"
    docs.mkdir()
    for i in range(30):
        (docs / f"note{i:02}.txt").write_text(f"Note {i}. " + "word " * 150, encoding="utf-8")
    settings = make_settings(tmp_path)
    settings.embedding.flush_chunks = 16
    ingestor, embedder = fake_ingestor(settings)
    report = ingestor.run([docs])
    assert len(report.added) == 30
    assert max(embedder.calls) == 16 and sum(embedder.calls) == report.chunks_written
    assert len(embedder.calls) == -(-report.chunks_written // 16)  # full batches, across file boundaries


def test_progress_events_cover_every_file(settings, corpus):
    class Recorder(ProgressListener):
        def __init__(self):
            self.events = []

        def planned(self, files, total_bytes):
            self.events.append(("planned", files))

        def file_finished(self, source, nbytes):
            self.events.append(("done", source))

        def chunks_embedded(self, count):
            self.events.append(("embedded", count))

    rec = Recorder()
    ingestor, _ = fake_ingestor(settings, progress=rec)
    report = ingestor.run([corpus])
    assert rec.events[0] == ("planned", 5)
    assert {e[1] for e in rec.events if e[0] == "done"} == SAMPLES
    assert sum(e[1] for e in rec.events if e[0] == "embedded") == report.chunks_written


def test_half_written_file_is_repaired_to_a_clean_state(settings, corpus, tmp_path):
    """Simulate a crash after some chunks of a changed file were written, before its old ones went."""
    run(settings, corpus)
    ingestor, _ = fake_ingestor(settings)
    md = corpus / "compost-guide.md"
    md.write_text(md.read_text(encoding="utf-8").replace("trois kilogrammes", "quatre kilogrammes"), encoding="utf-8")
    # a partial write of the new version: its first chunk only, with the new hash
    from ingest.discover import discover
    from ingest.pipeline import _Planned, file_sha256, root_key
    from ingest.workers import parse

    f = next(x for x in discover(corpus).files if x.source == "compost-guide.md")
    key = root_key(corpus, settings.paths.store_dir)
    stored = ingestor.store.stored_documents(key)["compost-guide.md"]
    planned = _Planned(f, file_sha256(md), stored)
    parsed = parse(ingestor._parse_job(planned), ingestor.counter)
    job = ingestor._prepare(key, planned, parsed, "t", IngestReport())
    i = job.to_embed[0]
    ingestor.store.upsert(
        [job.ids[i]], ingestor.embedder.embed_documents([job.search_text(i)]), [job.texts[i]], [job.metadatas[i]]
    )
    report = run(settings, corpus)
    assert report.updated == ["compost-guide.md"]
    clean = clean_settings(tmp_path)
    run(clean, corpus)
    assert store_snapshot(fake_ingestor(clean)[0].store) == store_snapshot(ingestor.store)


def test_duplicate_copies_in_two_folders_are_separate_documents(settings, tmp_path):
    docs = tmp_path / "d"
    (docs / "a").mkdir(parents=True)
    (docs / "b").mkdir()
    for sub in ("a", "b"):
        (docs / sub / "same.txt").write_text("Identical content in two places.", encoding="utf-8")
    report = run(settings, docs)
    assert sorted(report.added) == ["a/same.txt", "b/same.txt"]
    assert len(metadatas(settings)) == 2


def test_store_of_another_embedding_model_is_refused(settings, corpus):
    from dataclasses import replace

    from rag.errors import StoreMismatchError
    from rag.search.store import open_store

    run(settings, corpus)
    with pytest.raises(StoreMismatchError, match="was built with the embedding model fake-hash-embedder"):
        open_store(settings, replace(FAKE_INFO, name="another-model"))


def test_copy_of_corpus_elsewhere_is_a_new_root(settings, corpus, tmp_path):
    run(settings, corpus)
    moved = tmp_path / "moved"
    shutil.copytree(corpus, moved)
    report = run(settings, moved)
    assert set(report.added) == SAMPLES


def test_moving_the_project_folder_keeps_every_chunk(tmp_path, corpus):
    settings = make_settings(tmp_path / "project")
    shutil.move(corpus, tmp_path / "project" / "docs")
    run(settings, tmp_path / "project" / "docs")
    shutil.move(tmp_path / "project", tmp_path / "moved-project")
    moved = make_settings(tmp_path / "moved-project")
    report = run(moved, tmp_path / "moved-project" / "docs")
    assert set(report.unchanged) == SAMPLES and not report.added and not report.removed


def test_folders_away_from_the_store_are_named_by_absolute_path(tmp_path):
    from ingest.pipeline import resolve_root, root_key

    store = tmp_path / "app" / "vectorstore"
    assert root_key(tmp_path / "app" / "data", store) == "data"
    assert root_key(tmp_path / "elsewhere", store) == str(tmp_path / "elsewhere")
    assert resolve_root("data", store) == tmp_path / "app" / "data"
    assert resolve_root(str(tmp_path / "elsewhere"), store) == tmp_path / "elsewhere"
    unnormalized = tmp_path / "app" / "sub" / ".." / "vectorstore"
    assert resolve_root(root_key(tmp_path / "app" / "data", unnormalized), unnormalized) == tmp_path / "app" / "data"


def test_forget_removes_a_folder_and_only_it(settings, corpus, tmp_path):
    other = other_folder(tmp_path)
    run(settings, corpus)
    run(settings, other)
    shutil.rmtree(corpus)
    ingestor, _ = fake_ingestor(settings)
    assert ingestor.forget(corpus) > 0
    assert {m["source"] for m in metadatas(settings)} == {"a.txt"}


def test_forget_also_removes_chunks_stored_under_the_folders_absolute_name(settings, corpus):
    run(settings, corpus)  # stored as "corpus", relative to the store's parent
    ingestor, _ = fake_ingestor(settings)
    old = next(iter(ingestor.store.iter_metadatas()))
    absolute = dict(old[1], root=str(corpus.absolute()))
    ingestor.store.upsert([old[0] + "x"], [[1.0] + [0.0] * 15], ["old copy"], [absolute])
    stored = len(metadatas(settings))
    assert ingestor.forget(corpus) == stored > 1
    assert metadatas(settings) == []
