"""Every name the file system can hold is stored readably (and found again on disk) or refused alone."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ingest.pipeline import document_path
from ingest.uploads import remove_document
from rag.search.names import file_name, needs_escape, readable_name
from tests.conftest import make_settings
from tests.fakes import fake_ingestor

LATIN1 = b"caf\xe9 menu.txt"  # written by an older system: not valid UTF-8
NFC = unicodedata.normalize("NFC", "résumé équipe.txt")
NFD = unicodedata.normalize("NFD", "résumé équipe.txt")  # as macOS writes it: a different name on Linux
LONG = "é" * 123 + ".md"  # 250 bytes, near the 255-byte limit of one name
NEWLINE = "notes\nde réunion.txt"

NAMES: dict[bytes, str] = {
    b"good.txt": "Apples and oranges are sold at the market.",
    LATIN1: "The café serves espresso from a lever machine.",
    NFC.encode(): "The composed résumé lists the hiking club.",
    NFD.encode(): "The decomposed résumé lists the sailing club.",
    LONG.encode(): "A very long name holds notes about submarines.",
    NEWLINE.encode(): "The meeting notes mention tulips in spring.",
    b"deep/" + b"dossier-" * 20 + b"/" + b"sous-dossier/" * 10 + b"fin.txt": "A note on lighthouses.",
}


def write_tree(folder: Path) -> None:
    for raw, text in NAMES.items():
        path = os.path.join(os.fsencode(folder), raw)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(text.encode())


def test_every_file_name_goes_in_and_leads_back_to_its_file(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    write_tree(docs)
    settings = make_settings(tmp_path)
    ingestor, _ = fake_ingestor(settings)
    report = ingestor.run([docs])
    assert report.failed == [] and len(report.added) == len(NAMES)
    assert "caf\\xe9 menu.txt" in report.added and "notes\\x0ade réunion.txt" in report.added
    assert NFC in report.added and NFD in report.added  # two files, two documents
    docs_in_store = ingestor.store.documents()
    assert len(docs_in_store) == len(NAMES)
    for doc in docs_in_store:
        doc.source.encode("utf-8")  # valid Unicode: Chroma, JSON and the page take it
        assert not any(ch in doc.source for ch in "\n\r\x00")
        path = document_path(doc.root, doc.source, settings.paths.store_dir)
        assert path.is_file(), doc.source
        got = ingestor.store.collection.get(where={"source": doc.source}, include=["documents"])["documents"]
        assert got == [path.read_text(encoding="utf-8")]
    assert fake_ingestor(settings)[0].run([docs]).unchanged == sorted(report.added)


def test_a_file_with_an_undecodable_name_is_removed_and_updated_like_any_other(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    write_tree(docs)
    settings = make_settings(tmp_path)
    fake_ingestor(settings)[0].run([docs])
    raw = os.path.join(os.fsencode(docs), LATIN1)
    with open(raw, "ab") as f:
        f.write(b" Also tea.")
    report = fake_ingestor(settings)[0].run([docs])
    assert report.updated == ["caf\\xe9 menu.txt"]
    os.remove(raw)
    report = fake_ingestor(settings)[0].run([docs])
    assert report.removed == ["caf\\xe9 menu.txt"] and report.failed == []


def test_removing_a_document_with_an_escaped_name_reaches_its_file(tmp_path, monkeypatch):
    import ingest.uploads

    settings = make_settings(tmp_path)
    docs = settings.paths.docs_dir
    docs.mkdir(parents=True, exist_ok=True)
    raw = os.path.join(os.fsencode(docs), LATIN1)
    with open(raw, "wb") as f:
        f.write(b"The cafe serves espresso.")
    ingestor, _ = fake_ingestor(settings)
    ingestor.run([docs])
    monkeypatch.setattr(ingest.uploads, "build_ingestor", lambda s: ingestor)
    [doc] = ingestor.store.documents()
    assert remove_document(settings, doc.root, doc.source) == 1
    assert not os.path.exists(raw)  # moved aside, as for any removed document


def test_a_literal_name_equal_to_an_escaped_one_is_refused_alone(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    with open(os.path.join(os.fsencode(docs), LATIN1), "wb") as f:
        f.write(b"Bytes in the name.")
    (docs / "caf\\xe9 menu.txt").write_text("A backslash in the name.", encoding="utf-8")
    (docs / "other.txt").write_text("Another file.", encoding="utf-8")
    report = fake_ingestor(make_settings(tmp_path))[0].run([docs])
    assert len(report.added) == 2 and "other.txt" in report.added
    [problem] = report.failed
    assert problem.source == "caf\\xe9 menu.txt" and "same name" in problem.reason


@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\x00" not in b))
def test_readable_names_are_valid_unicode_and_lead_back_to_the_bytes(raw):
    name = os.fsdecode(raw)
    shown = readable_name(name)
    shown.encode("utf-8")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in shown)
    if needs_escape(name):
        assert os.fsencode(file_name(shown)) == raw
    else:
        assert shown == name
