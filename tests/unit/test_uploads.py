"""Uploads and removals from the page: safe names, size limit, no silent overwrite, nothing deleted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ingest.uploads import REMOVED, remove_document, safe_filename, save_upload
from rag.errors import DocumentError
from rag.search.retrieval import LiveRetriever
from rag.search.store import drop_cached_stores
from tests.conftest import REPO
from tests.fakes import FAKE_INFO, FakeEmbedder, fake_ingestor


@pytest.mark.parametrize(
    ("sent", "saved"),
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\notes.md", "notes.md"),
        ("/abs/path/report.PDF", "report.pdf"),
        (".hidden.txt", "hidden.txt"),
        ("rapport été 2024.docx", "rapport été 2024.docx"),
        ("bad\x00name\x1b.txt", "badname.txt"),
        ("a<b>c|d?.html", "a_b_c_d_.html"),
    ],
)
def test_names_are_made_safe(sent, saved):
    assert safe_filename(sent) == saved


@pytest.mark.parametrize("sent", ["", "..", "noextension", "archive.zip", "/", ".txt"])
def test_names_that_are_not_documents_are_refused(sent):
    with pytest.raises(DocumentError):
        safe_filename(sent)


def test_a_long_name_keeps_its_extension():
    name = safe_filename("x" * 500 + ".pdf")
    assert name.endswith(".pdf") and len(name) <= 120


def test_upload_never_overwrites_and_says_so(tmp_path):
    first = save_upload(b"one", "notes.txt", tmp_path, max_mb=1)
    same = save_upload(b"one", "notes.txt", tmp_path, max_mb=1)
    other = save_upload(b"two", "notes.txt", tmp_path, max_mb=1)
    assert first.path.name == "notes.txt" and not first.renamed
    assert same.duplicate and same.path == first.path
    assert other.renamed and other.path.name == "notes (2).txt"
    assert (tmp_path / "notes.txt").read_bytes() == b"one" and other.path.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes (2).txt", "notes.txt"]  # no temp file left


def test_upload_over_the_limit_is_refused_with_its_name(tmp_path):
    with pytest.raises(DocumentError, match=r"big.txt: larger than the upload limit of 1 MB"):
        save_upload(b"x" * (2 * 1024 * 1024), "big.txt", tmp_path, max_mb=1)
    assert not list(tmp_path.iterdir())


def test_removing_a_document_moves_its_file_aside_and_drops_its_chunks(settings, corpus, monkeypatch):
    import ingest.uploads

    settings.paths.docs_dir = corpus
    ingestor = fake_ingestor(settings)[0]
    ingestor.run([corpus])
    monkeypatch.setattr(ingest.uploads, "build_ingestor", lambda s: ingestor)
    doc = next(d for d in ingestor.store.documents() if d.source == "compost-guide.md")
    removed = remove_document(settings, doc.root, doc.source)
    assert removed == doc.chunks > 0
    assert "compost-guide.md" not in {d.source for d in ingestor.store.documents()}
    assert not (corpus / "compost-guide.md").exists() and (corpus / REMOVED / "compost-guide.md").exists()
    report = ingestor.run([corpus])  # the file moved aside is not ingested again
    assert not report.added and "compost-guide.md" not in {d.source for d in ingestor.store.documents()}


@pytest.mark.parametrize("writer", ["this process", "another process"])
def test_the_live_retriever_sees_writes_made_after_it_opened(settings, corpus, writer):
    fake_ingestor(settings)[0].run([corpus])
    live = LiveRetriever(settings, FakeEmbedder(), FAKE_INFO)
    opened = live.store.version()
    assert any(p.source == "compost-guide.md" for p in live.search("compost", k=30))
    (corpus / "compost-guide.md").unlink()
    (corpus / "fresh.txt").write_text("Zanzibar quokka migration notes.", encoding="utf-8")
    if writer == "this process":
        fake_ingestor(settings)[0].run([corpus])
    else:
        cmd = [sys.executable, "-m", "tests.crash_driver", str(settings.paths.store_dir), str(corpus)]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    found = live.search("Zanzibar quokka", k=30)
    assert live.store.version() != opened
    assert any(p.source == "fresh.txt" for p in found)
    assert not any(p.source == "compost-guide.md" for p in found)
    drop_cached_stores()
