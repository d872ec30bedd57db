"""Files read and chunked in worker processes: same results, same order, failures and crashes contained.

Real worker processes (spawned), the real readers and the real packaged tokenizer; only the embedder is
a fake where an ingest runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from ingest.discover import discover
from ingest.parsing import DIED, Parsed, ParseFailure, ParseJob, _parse_in_worker, parse, parse_all
from ingest.pipeline import Ingestor
from rag.embedding import embedding_model_info, load_token_counter
from rag.store import open_store
from tests.conftest import make_settings
from tests.fakes import FAKE_INFO, FakeEmbedder, store_snapshot


def crash_on_marked_files(job: ParseJob) -> Parsed | ParseFailure:
    """Run in a worker: dies (as a segfault in a parser would) on files named crash-*."""
    if job.source.startswith("crash-"):
        os._exit(11)
    return _parse_in_worker(job)


def jobs_for(folder: Path) -> list[ParseJob]:
    return [ParseJob(f.path, f.kind, f.source, 128, 19, 32) for f in discover(folder).files]


def with_bad_files(corpus: Path) -> Path:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7 this is not a PDF at all")
    (corpus / "empty.txt").write_text("", encoding="utf-8")
    return corpus


def test_workers_give_the_same_results_in_the_same_order_as_one_process(settings, corpus):
    info = embedding_model_info(settings)
    counter = load_token_counter(info)
    jobs = jobs_for(with_bad_files(corpus))
    alone = list(parse_all(jobs, lambda j: j, lambda: counter, info, workers=0))
    pooled = list(parse_all(jobs, lambda j: j, lambda: counter, info, workers=2))
    assert [job.source for job, _ in pooled] == [job.source for job in jobs]
    assert pooled == alone
    failed = {job.source: result.reason for job, result in pooled if isinstance(result, ParseFailure)}
    assert set(failed) == {"broken.pdf", "empty.txt"}, failed
    parsed = {job.source: result for job, result in pooled if isinstance(result, Parsed)}
    assert parsed["politique-teletravail.pdf"].pages == 3
    assert all(len(r.chunks) == len(r.headers) > 0 for r in parsed.values())


def test_a_worker_that_dies_fails_only_its_own_file(settings, corpus):
    info = embedding_model_info(settings)
    counter = load_token_counter(info)
    for name in ("crash-early.txt", "crash-late.txt"):
        (corpus / name).write_text("Never read: the worker dies first.", encoding="utf-8")
    jobs = jobs_for(corpus)
    results = list(parse_all(jobs, lambda j: j, lambda: counter, info, workers=2, worker=crash_on_marked_files))
    assert [job.source for job, _ in results] == [job.source for job in jobs]
    by_source = {job.source: result for job, result in results}
    assert by_source["crash-early.txt"] == ParseFailure(DIED)
    assert by_source["crash-late.txt"] == ParseFailure(DIED)
    for job in jobs:
        if not job.source.startswith("crash-"):
            assert by_source[job.source] == parse(job, counter), job.source


def ingestor(settings, workers: int) -> Ingestor:
    info = embedding_model_info(settings)  # the real tokenizer, in this process and in the workers
    embedder = FakeEmbedder()
    return Ingestor(
        settings,
        open_store(settings, FAKE_INFO),
        info,
        counter_factory=lambda: load_token_counter(info),
        embedder_factory=lambda: embedder,
        workers=workers,
    )


def test_an_ingest_with_workers_writes_the_same_store_and_report(tmp_path, corpus):
    with_bad_files(corpus)
    one, two = make_settings(tmp_path), make_settings(tmp_path)
    two.paths.store_dir = tmp_path / "store-with-workers"
    report_one = ingestor(one, 0).run([corpus])
    report_two = ingestor(two, 2).run([corpus])
    for field in ("added", "failed", "pages", "chunks_written", "bytes_read"):
        assert getattr(report_two, field) == getattr(report_one, field), field
    assert len(report_two.failed) == 2 and report_two.chunks_written > 0
    assert store_snapshot(ingestor(two, 0).store) == store_snapshot(ingestor(one, 0).store)
    again = ingestor(two, 2).run([corpus])  # unchanged: only the two bad files are read again
    assert again.chunks_written == 0 and len(again.unchanged) == 5


def test_the_default_is_one_worker_per_core(settings):
    settings.ingest.workers = None
    assert settings.ingest.parse_workers() == len(os.sched_getaffinity(0))
    settings.ingest.workers = 0
    assert settings.ingest.parse_workers() == 0
