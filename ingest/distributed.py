"""Reading, chunking and embedding on a Ray cluster, the store written by this process.

``python -m ingest ./archive --ray ADDRESS`` (or ``ingest.ray_address``) plans as a local ingest does: it
hashes every file and only the files whose content the store does not hold go to the cluster. They go as
a Ray Data pipeline: the files' bytes (so the workers need no shared disk), then a pool of actors that
each load the tokenizer and the embedding model once and turn a file into its chunks and their vectors.
Results stream back in file order, a window of files at a time (bounding the driver's memory), and this
process writes them to the store exactly as a local ingest does: same lock, same crash safety, same
incremental rules, same report. A worker that dies is replaced by Ray and its file done again.

The workers need sourcier installed the same way (``pip install``, no model hub): the embedding model
comes from its PyPI package, and its ONNX copy is exported on each worker once (``paths.model_dir``,
made absolute here; it must be writable there).
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ingest.workers import Embedded, ParseFailure, ParseJob, multilingual_for, one_thread, parse_and_embed
from rag.errors import DocumentError, SettingsError
from rag.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

WINDOW_BYTES = 256 * 2**20  # file bytes sent to the cluster per window
WINDOW_FILES = 512


class ParseEmbed:
    """A Ray Data actor: the tokenizer and the embedding model loaded once, a file per call."""

    def __init__(self, settings_json: str) -> None:
        from rag.models.embedding import embedding_model_info, load_embedder, load_token_counter

        settings = Settings.model_validate_json(settings_json)
        self.info = embedding_model_info(settings)
        self.counter = load_token_counter(self.info)
        self.embedder = load_embedder(settings, self.info, bulk=True)
        self.multilingual = multilingual_for(settings)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        import tempfile

        job: ParseJob = pickle.loads(row["job"])
        with tempfile.TemporaryDirectory(prefix="sourcier-") as tmp:
            local = Path(tmp) / Path(job.source).name  # the reader may look at the suffix
            local.write_bytes(row["data"])
            result = parse_and_embed(
                dataclasses.replace(job, path=local), self.counter, self.embedder, self.multilingual
            )
        return {"i": row["i"], "result": pickle.dumps(result)}


def connect(address: str) -> Callable[[], None]:
    """Join the cluster at ``address`` ("local" or "local:N" starts one in this machine with N CPUs);
    returns what to call at the end."""
    try:
        import ray
    except ImportError:
        raise SettingsError("ingest.ray_address is set but Ray is not installed: pip install -e '.[cluster]'") from None
    if ray.is_initialized():
        return lambda: None
    quiet = {"log_to_driver": False, "configure_logging": True, "logging_level": logging.WARNING}
    if address == "local" or address.startswith("local:"):
        cpus = int(address.split(":", 1)[1]) if ":" in address else None
        ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
    else:
        try:
            ray.init(address=address, **quiet)
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, ...
            raise SettingsError(f"cannot join the Ray cluster at {address}: {exc}") from None
    return ray.shutdown


def cluster_parse_embed(
    items: list[T],
    to_job: Callable[[T], ParseJob],
    settings: Settings,
    actors: int | None = None,
) -> Iterator[tuple[T, Embedded | ParseFailure]]:
    """Each item with what the cluster made of its file, in order (the cluster must be joined)."""
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    size = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    settings_json = one_thread(settings).model_dump_json()
    for window in _windows(items, to_job):
        rows, unreadable = [], {}
        for i, (_, job) in enumerate(window):
            try:
                data = job.path.read_bytes()
            except OSError as exc:
                unreadable[i] = ParseFailure(str(DocumentError(f"cannot read file: {exc.strerror or exc}")))
                continue
            rows.append({"i": i, "job": pickle.dumps(job), "data": data})
        results: dict[int, Embedded | ParseFailure] = dict(unreadable)
        if rows:
            ds = ray.data.from_items(rows, override_num_blocks=len(rows))
            # Ray Data restarts a dead actor and retries its file (max_restarts and max_task_retries default to -1)
            ds = ds.map(
                ParseEmbed, fn_constructor_kwargs={"settings_json": settings_json},
                compute=ray.data.ActorPoolStrategy(size=min(size, len(rows))), num_cpus=1,
            )  # fmt: skip
            next_i = 0
            for row in ds.iter_rows():
                results[int(row["i"])] = pickle.loads(row["result"])
                while next_i in results:
                    yield window[next_i][0], results.pop(next_i)
                    next_i += 1
            rows.clear()
        for i in sorted(results):
            yield window[i][0], results[i]


def _windows(items: list[T], to_job: Callable[[T], ParseJob]) -> Iterator[list[tuple[T, ParseJob]]]:
    window: list[tuple[T, ParseJob]] = []
    size = 0
    for item in items:
        job = to_job(item)
        try:
            nbytes = job.path.stat().st_size
        except OSError:
            nbytes = 0
        if window and (size + nbytes > WINDOW_BYTES or len(window) >= WINDOW_FILES):
            yield window
            window, size = [], 0
        window.append((item, job))
        size += nbytes
    if window:
        yield window
