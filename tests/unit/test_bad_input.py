"""Bad files never stop an ingest, never leave chunks behind, and are reported with a reason."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ingest.discover import discover
from ingest.readers import read_document
from rag.errors import DocumentError
from tests.conftest import SAMPLE_DATA, make_settings
from tests.fakes import fake_ingestor

PDF = SAMPLE_DATA / "politique-teletravail.pdf"


def encrypted_pdf(password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(PDF))
    writer.encrypt(user_password=password, owner_password="owner", algorithm="AES-256")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def blank_pdf(pages: int = 2) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


BAD_FILES: dict[str, tuple[bytes, str]] = {
    "empty.pdf": (b"", "empty file"),
    "empty.txt": (b"", "empty file"),
    "blank-lines.md": (b"\n\n   \n", "no text"),
    "truncated.pdf": (PDF.read_bytes()[: len(PDF.read_bytes()) // 3], "not a readable PDF"),
    "garbage.pdf": (os.urandom(3000), "not a readable PDF"),
    "locked.pdf": (encrypted_pdf("secret"), "needs a password"),
    "scan.pdf": (blank_pdf(), "no extractable text"),
    "junk.txt": (bytes(range(256)) * 40, "binary content"),
    "fake.docx": (b"PK\x03\x04 this is not a zip", "not a readable Word"),
    "fake.html": (b"\x00\x01\x02" * 500, "binary content"),
    "photo.jpg": (b"\xff\xd8\xff", "not a readable image"),
}


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    root = tmp_path / "messy"
    root.mkdir()
    for name, (data, _) in BAD_FILES.items():
        (root / name).write_bytes(data)
    (root / "good.txt").write_text("Les renards roux chassent surtout la nuit.", encoding="utf-8")
    (root / "latin1.txt").write_bytes("Café crème à l'été, déjà noté où ça coûte cher.".encode("latin-1"))
    (root / "aes-empty-password.pdf").write_bytes(encrypted_pdf(""))
    (root / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "dangling.txt").symlink_to(root / "nowhere.txt")
    (root / ".hidden.txt").write_text("dotfiles are ignored", encoding="utf-8")
    return root


def test_every_bad_file_is_reported_and_good_ones_stored(tmp_path, messy):
    settings = make_settings(tmp_path)
    ingestor, _ = fake_ingestor(settings)
    report = ingestor.run([messy])
    reasons = {p.source: p.reason for p in report.failed}
    for name, (_, expected) in BAD_FILES.items():
        assert expected in reasons[name], (name, reasons.get(name))
    assert "broken symbolic link" in reasons["dangling.txt"]
    assert sorted(report.added) == ["aes-empty-password.pdf", "good.txt", "latin1.txt"]
    skipped = {p.source: p.reason for p in report.skipped}
    assert "unsupported file type '.mp4'" in skipped["clip.mp4"]
    assert "symbolic link loop" in skipped["loop"]
    assert report.hidden == 1 and not report.ok
    stored = {m["source"] for _, m in ingestor.store.iter_metadatas()}
    assert stored == {"aes-empty-password.pdf", "good.txt", "latin1.txt"}


def test_non_utf8_text_is_decoded_not_mangled(messy):
    (page,) = read_document(messy / "latin1.txt", "text").pages
    assert "Café crème à l'été" in page.text


def test_empty_password_aes_pdf_is_read(messy):
    pages = read_document(messy / "aes-empty-password.pdf", "pdf").pages
    assert len(pages) == 3 and "télétravail" in pages[0].text


def test_file_over_the_size_limit_is_refused_unread(tmp_path):
    docs = tmp_path / "big"
    docs.mkdir()
    (docs / "huge.txt").write_bytes(b"word " * 300_000)  # 1.5 MB
    settings = make_settings(tmp_path)
    settings.chunking.max_file_mb = 1
    ingestor, embedder = fake_ingestor(settings)
    report = ingestor.run([docs])
    assert "above the limit of 1 MB" in report.failed[0].reason and embedder.calls == []


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    docs = tmp_path / "d"
    docs.mkdir()
    (docs / "secret.txt").write_text("hidden", encoding="utf-8")
    (docs / "ok.txt").write_text("visible text", encoding="utf-8")
    real_open = open

    def guarded_open(path, *a, **kw):  # as root, chmod 000 does not stop reads: simulate EACCES
        if str(path).endswith("secret.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr("builtins.open", guarded_open)
    ingestor, _ = fake_ingestor(make_settings(tmp_path))
    report = ingestor.run([docs])
    assert report.added == ["ok.txt"]
    assert report.failed[0].source == "secret.txt" and "Permission denied" in report.failed[0].reason


def test_file_that_turns_bad_keeps_its_previous_version(tmp_path):
    docs = tmp_path / "d"
    docs.mkdir()
    (docs / "a.pdf").write_bytes(PDF.read_bytes())
    settings = make_settings(tmp_path)
    fake_ingestor(settings)[0].run([docs])
    (docs / "a.pdf").write_bytes(PDF.read_bytes()[:500])
    ingestor, _ = fake_ingestor(settings)
    report = ingestor.run([docs])
    assert "previously ingested version is kept" in report.failed[0].reason
    assert {m["page"] for _, m in ingestor.store.iter_metadatas()} == {1, 2, 3}


def test_missing_target_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        discover(tmp_path / "nope")


def test_parser_crash_on_one_file_does_not_stop_the_run(tmp_path, monkeypatch):
    docs = tmp_path / "d"
    docs.mkdir()
    (docs / "a.txt").write_text("alpha text", encoding="utf-8")
    (docs / "b.md").write_text("beta text", encoding="utf-8")
    from ingest import readers

    def boom(path, budget):
        raise RuntimeError("parser exploded")

    monkeypatch.setitem(readers._READERS, "markdown", boom)
    report = fake_ingestor(make_settings(tmp_path))[0].run([docs])
    assert report.added == ["a.txt"] and "parser exploded" in report.failed[0].reason


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4000), suffix=st.sampled_from([".pdf", ".txt", ".md", ".html", ".docx"]))
def test_random_bytes_never_crash_a_reader(tmp_path, data, suffix):
    from ingest.discover import SUPPORTED_SUFFIXES

    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        pages = read_document(path, SUPPORTED_SUFFIXES[suffix]).pages
    except DocumentError as exc:
        assert str(exc)
    else:
        assert pages and all(p.text.strip() for p in pages)


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Café crème à l'été, déjà noté où ça coûte cher.", "latin-1"),
        ("Größe und Übermaß, schöne Grüße aus München.", "cp1252"),
        ("Привет, как дела? Это тест кодировки текста.", "cp1251"),
        ("Zażółć gęślą jaźń, łódź płynie po rzece Wisła.", "cp1250"),
        ("Le cœur de l’été — « déjà » vu", "cp1252"),
    ],
)
def test_legacy_encodings_are_detected(tmp_path, text, encoding):
    path = tmp_path / "legacy.txt"
    path.write_bytes(text.encode(encoding))
    assert read_document(path, "text").pages[0].text == text


def test_utf16_with_bom_is_read(tmp_path):
    path = tmp_path / "u16.txt"
    path.write_bytes("Texte en UTF-16 avec accents : é, à.".encode("utf-16"))
    assert "accents : é, à" in read_document(path, "text").pages[0].text


def test_file_grown_past_the_limit_keeps_its_previous_version(tmp_path):
    docs = tmp_path / "d"
    docs.mkdir()
    (docs / "grows.txt").write_text("A small note about herons.", encoding="utf-8")
    settings = make_settings(tmp_path)
    settings.chunking.max_file_mb = 1
    fake_ingestor(settings)[0].run([docs])
    (docs / "grows.txt").write_bytes(b"heron " * 400_000)  # 2.4 MB
    ingestor, _ = fake_ingestor(settings)
    report = ingestor.run([docs])
    assert report.removed == [] and "previously ingested version is kept" in report.failed[0].reason
    assert [m["source"] for _, m in ingestor.store.iter_metadatas()] == ["grows.txt"]


def test_a_run_over_many_mutated_documents_never_crashes_and_names_every_failure(tmp_path):
    """Seeded fuzz through the whole ingest: truncations, byte flips and splices of the real sample
    files (PDF, DOCX, HTML, Markdown, text) plus random bytes; 80 files in one run."""
    import random

    rng = random.Random(2026)
    samples = sorted(p for p in SAMPLE_DATA.iterdir() if p.is_file())
    docs = tmp_path / "fuzz"
    docs.mkdir()
    for i in range(80):
        source = rng.choice(samples)
        data = bytearray(source.read_bytes())
        kind = i % 4
        if kind == 0:
            data = data[: rng.randint(0, len(data))]
        elif kind == 1:
            for _ in range(rng.randint(1, 50)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 2:
            other = rng.choice(samples).read_bytes()
            cut = rng.randrange(len(data))
            data = data[:cut] + other[rng.randrange(len(other)) :]
        else:
            data = bytearray(rng.randbytes(rng.randint(0, 5000)))
        (docs / f"f{i:02}{source.suffix}").write_bytes(bytes(data))
    shutil.copy(SAMPLE_DATA / "compost-guide.md", docs / "good.md")
    ingestor = fake_ingestor(make_settings(tmp_path))[0]
    report = ingestor.run([docs])
    handled = set(report.added) | {p.source for p in report.failed}
    assert handled == {p.name for p in docs.iterdir()}  # every file accounted for, none lost in a crash
    assert "good.md" in report.added
    assert all(p.reason.strip() for p in report.failed)
    stored = {d.source for d in ingestor.store.documents()}
    assert stored == set(report.added)  # a failed file leaves nothing behind
    print(f"{len(handled)} fuzzed files: {len(report.added)} read, {len(report.failed)} refused with a reason")
