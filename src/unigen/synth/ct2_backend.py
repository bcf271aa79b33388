"""CTranslate2 backend for generation and scoring (``generate.backend`` / ``scoring.backend = ctranslate2``).

* :func:`converted_dir` converts the generator's Hugging Face folder once into the model cache
  (``<cache>/ct2/<name>-<source sha256>-<quantization>-ct2-<version>``, written into a temporary
  folder and renamed, so a killed conversion leaves nothing behind). The source digest covers the
  folder's weight, config and tokenizer files, so a changed model never reuses a stale conversion.
* :class:`CT2Sampler` implements :class:`unigen.synth.sampling.TextSampler` with ``Generator.generate_batch``:
  the same top-k / top-p / temperature / ``max_new_tokens``, stopping a row at its first token whose
  text holds a double quote or a newline, or EOS (the stop token is kept, as :class:`LMSampler` does).
* :class:`CT2Scorer` is :class:`unigen.synth.scoring.LMScorer` (same templates, truncation, calibration,
  batching) with the forward passes replaced: the nll rule is ``Generator.score_batch`` (log-probs of tokens
  2..T, averaged: exactly ``LMScorer.sequence_nll`` without padding), the verbalizer rule reads the
  last real position of ``Generator.forward_batch(return_log_probs=True)``.

Reproducibility. CTranslate2 samples with one Mersenne Twister per worker thread, seeded from the
process-wide seed (``ctranslate2.set_random_seed``) when that thread first samples and never again.
So every ``generate_batch`` call here runs on a freshly loaded ``Generator`` (new worker thread)
after setting the seed to a hash of the batch's row seeds: a batch's texts depend on its seeds (and
on the batch's composition, which the shard plan and ``generate.batch_size`` fix), not on what ran
before, so a resumed run reproduces an uninterrupted one. Unlike :class:`LMSampler`, a row's text is
not independent of the other rows of its batch, which is why ``generate.batch_size`` is part of the
generation fingerprint with this backend. Results are reproducible on one machine and backend
setting; int8 kernels may differ across CPU instruction sets.

int8 weights change the model. On SmolLM2-135M (``scripts/bench_synth.py``): teacher-forced next-token
KL(fp32 || int8) 0.046 nats on average, top-1 agreement 87%; as a scorer, int8 moved calibrated
verbalizer scores by up to 2.5 nats and nll scores by 0.3, so 15% (verbalizer) and 33% (nll) of the
relabel filter's keep/drop decisions changed. A float32 conversion matches Hugging Face fp32 to ~1e-4.
Hence the defaults: ``generate.ct2_compute_type = int8`` (sampling; a different but close model, like
``generate.precision = bf16``) and ``scoring.ct2_compute_type = float32`` (scores equal transformers').
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from unigen.errors import ModelNotAvailable
from unigen.files import atomic_write_text, publish_folder, update_sha256
from unigen.registry import cache_dir, from_pretrained, resolve
from unigen.synth.sampling import Continuation, SamplingSettings, eos_token_ids, stop_token_mask
from unigen.synth.scoring import LMScorer, scoring_progress

BACKENDS = ("transformers", "ctranslate2")
COMPUTE_TYPES = ("int8", "int8_float32", "float32")  # CPU; float32 needs a float32 conversion
_SOURCE_FILES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja")


def _ct2() -> Any:
    try:
        import ctranslate2
    except ImportError:
        raise ModelNotAvailable(
            "the ctranslate2 backend needs the ctranslate2 package: pip install ctranslate2 "
            "(or rerun bash scripts/setup.sh)"
        ) from None
    return ctranslate2


# ---------------------------------------------------------------- conversion

def source_folder(name: str) -> Path:
    """The local Hugging Face folder of a registry name, local path or (already downloaded) Hub id."""
    path = Path(resolve(name))
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means: not on this machine
        raise ModelNotAvailable(
            f"'{name}': the ctranslate2 backend converts a local model folder; download it "
            f"first (`hf download {name} --local-dir DIR`) and pass DIR"
        ) from None


def source_digest(folder: Path) -> str:
    """sha256 over the names and contents of the folder's weight/config/tokenizer files (memoised by
    path, size and mtime in ``<cache>/ct2/digests.json``)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_SOURCE_FILES))
    memo_path = cache_dir() / "ct2" / "digests.json"
    memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    key = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    if key not in memo:
        digest = hashlib.sha256()
        for p in files:
            digest.update(p.name.encode() + b"\0")
            update_sha256(digest, p)
        memo[key] = digest.hexdigest()
        atomic_write_text(memo_path, json.dumps(memo, indent=1))
    return memo[key]


def check_architecture(folder: Path) -> None:
    """Fail with one line when CTranslate2 has no converter for the model's configuration class."""
    from transformers import AutoConfig

    try:
        from ctranslate2.converters.transformers import _MODEL_LOADERS
    except ImportError:  # private name moved: let the converter itself decide
        return
    config_name = type(AutoConfig.from_pretrained(folder)).__name__
    if config_name not in _MODEL_LOADERS:
        raise ModelNotAvailable(
            f"{folder.name}: CTranslate2 {_ct2().__version__} cannot convert {config_name} "
            "models; use generate.backend=transformers / scoring.backend=transformers"
        )


def converted_dir(name: str, quantization: str = "int8") -> Path:
    """The CTranslate2 model of ``name`` with ``quantization`` weights, converted once into the cache."""
    ct2 = _ct2()
    src = source_folder(name)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).name)[:40]
    key = f"{slug}-{source_digest(src)[:16]}-{quantization}-ct2-{ct2.__version__}"
    target = cache_dir() / "ct2" / key
    if (target / "model.bin").is_file():
        return target
    check_architecture(src)
    try:
        with publish_folder(target) as folder:  # another process finishing the same conversion first is fine
            converter = ct2.converters.TransformersConverter(str(src), low_cpu_mem_usage=True)
            converter.convert(str(folder), quantization=quantization, force=True)
            _fill_special_tokens(folder / "config.json")
            (folder / "unigen_source.json").write_text(json.dumps(
                {"source": str(src), "sha256": source_digest(src), "quantization": quantization,
                 "ctranslate2": ct2.__version__}, indent=1))
    except (ValueError, NotImplementedError) as exc:
        raise ModelNotAvailable(
            f"{name}: CTranslate2 conversion failed: {str(exc).splitlines()[0]}"
        ) from None
    return target


def _fill_special_tokens(path: Path) -> None:
    """CTranslate2 cannot load a null special token (a model without BOS); we always pass the start
    tokens ourselves, so the EOS token stands in."""
    config = json.loads(path.read_text())
    for key in ("bos_token", "unk_token"):
        if not config.get(key):
            config[key] = config.get("eos_token") or "<unk>"
    path.write_text(json.dumps(config, indent=2))


def weights_for(compute_type: str) -> str:
    """The stored quantization a compute type loads from (float32 needs float32 weights)."""
    return "float32" if compute_type == "float32" else "int8"


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = from_pretrained(AutoTokenizer, str(source_folder(name)))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _generation_config(name: str) -> Any:
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(source_folder(name))
    except OSError:
        return None


def _device(device: str) -> tuple[str, int]:
    from unigen.registry import pick_device

    dev = pick_device(device)
    if dev.startswith("cuda"):
        return "cuda", int(dev.split(":")[1]) if ":" in dev else 0
    return "cpu", 0


def _threads(threads: int | None) -> int:
    if threads:
        return threads
    import torch

    return torch.get_num_threads()


class _Model:
    """Where and how a converted model is loaded (a fresh ``Generator`` on every :meth:`load`)."""

    def __init__(self, name: str, compute_type: str, device: str, threads: int | None):
        if compute_type not in COMPUTE_TYPES:
            raise ModelNotAvailable(f"ctranslate2 compute type must be one of {', '.join(COMPUTE_TYPES)}; "
                                    f"got {compute_type!r}")
        self.path = converted_dir(name, weights_for(compute_type))
        self.compute_type = compute_type
        self.device, self.device_index = _device(device)
        self.threads = _threads(threads)

    def load(self) -> Any:
        return _ct2().Generator(str(self.path), device=self.device, device_index=self.device_index,
                                compute_type=self.compute_type, inter_threads=1, intra_threads=self.threads)


# ---------------------------------------------------------------- sampling

def batch_seed(seeds: Sequence[int]) -> int:
    """One 31-bit CTranslate2 seed from a batch's row seeds (their order and count included)."""
    blob = ",".join(str(int(s)) for s in seeds).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") % (2**31 - 1)


class CT2Sampler:
    """:class:`unigen.synth.sampling.TextSampler` on a CTranslate2 ``Generator`` (module docstring)."""

    def __init__(self, name: str, settings: SamplingSettings, batch_size: int = 64, *,
                 compute_type: str = "int8", device: str = "cpu", threads: int | None = None,
                 tokenizer: Any = None):
        self.model = _Model(name, compute_type, device, threads)
        self.tokenizer = tokenizer or load_tokenizer(name)
        self.settings = settings
        self.batch_size = batch_size
        eos = eos_token_ids(SimpleNamespace(generation_config=_generation_config(name)), self.tokenizer)
        mask = stop_token_mask(self.tokenizer, len(self.tokenizer), eos)
        self.stop_ids = [int(i) for i in mask.nonzero()[:, 0].tolist()]
        self._prompt_tokens: dict[str, list[str]] = {}
        self._generator: Any = None
        self.tokens_generated = 0

    def sample(self, prompt: str, seeds: Sequence[int], *,
               max_new_tokens: int | None = None) -> list[Continuation]:
        """Continue ``prompt`` once per seed, with at most ``max_new_tokens`` new tokens (default: the
        settings')."""
        steps = max_new_tokens or self.settings.max_new_tokens
        out: list[Continuation] = []
        for start in range(0, len(seeds), self.batch_size):
            out.extend(self._sample_batch(prompt, seeds[start: start + self.batch_size], steps))
        return out

    def _fresh_generator(self) -> Any:
        """A ``Generator`` whose worker thread has not sampled yet (its RNG takes the next seed)."""
        old, self._generator = self._generator, None
        del old
        generator = self.model.load()
        return generator

    def _sample_batch(self, prompt: str, seeds: Sequence[int], steps: int) -> list[Continuation]:
        if not seeds:
            return []
        if prompt not in self._prompt_tokens:
            ids = self.tokenizer(prompt)["input_ids"]
            self._prompt_tokens[prompt] = self.tokenizer.convert_ids_to_tokens(ids)
        generator = self._fresh_generator()
        s = self.settings
        _ct2().set_random_seed(batch_seed(seeds))
        results = generator.generate_batch(
            [self._prompt_tokens[prompt]] * len(seeds),
            max_length=steps,
            sampling_topk=s.top_k if s.top_k > 0 else 0,
            sampling_topp=s.top_p,
            sampling_temperature=s.temperature,
            include_prompt_in_result=False,
            end_token=self.stop_ids,
            return_end_token=True,
        )
        del generator  # used: its RNG has advanced, the next batch needs a new one
        out = []
        for r in results:
            ids = list(r.sequences_ids[0])[:steps]
            self.tokens_generated += len(ids)
            out.append(
                Continuation(self.tokenizer.decode(ids, skip_special_tokens=True), len(ids), tuple(ids))
            )
        return out


# ---------------------------------------------------------------- scoring

class CT2Scorer(LMScorer):
    """:class:`unigen.synth.scoring.LMScorer` whose forward passes run on CTranslate2 (module docstring)."""

    def __init__(self, name: str, labels: Sequence[str], config: Any = None, *, compute_type: str = "float32",
                 device: str = "cpu", threads: int | None = None, tokenizer: Any = None):
        from unigen.config import ScoringConfig

        self.config = config or ScoringConfig()
        if self.config.include_padding:
            raise ModelNotAvailable("scoring.include_padding (the paper code's padding quirk) needs "
                                    "scoring.backend=transformers")
        self.tokenizer = tokenizer or load_tokenizer(name)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.labels = tuple(labels)
        self.model = _Model(name, compute_type, device, threads).load()
        self.device = "cpu"
        self._label_token_ids: list[int] | None = None
        self._content_free: np.ndarray | None = None

    def sequence_nll(self, seqs: list[list[int]]) -> np.ndarray:
        """Mean NLL over positions 2..T of each token sequence (``Generator.score_batch``)."""
        out = np.zeros(len(seqs), dtype=np.float64)
        todo = [i for i, s in enumerate(seqs) if len(s) > 1]
        if todo:
            tokens = [self.tokenizer.convert_ids_to_tokens(seqs[i]) for i in todo]
            results = self.model.score_batch(
                tokens, max_batch_size=self.config.batch_size, max_input_length=0
            )
            for i, r in zip(todo, results):
                out[i] = -float(np.mean(r.log_probs))
        return out

    def _nll_scores(self, texts: list[str], template: str, progress: bool) -> np.ndarray:
        n, k = len(texts), len(self.labels)
        seqs = self._encode([template.format(label=lab, text=t) for t in texts for lab in self.labels])
        out = np.zeros(n * k)
        step = self.config.batch_size * 16 * k  # score_batch sorts by length inside each call
        with scoring_progress(n, "scoring (nll)", progress) as bar:
            for start in range(0, len(seqs), step):
                out[start: start + step] = self.sequence_nll(seqs[start: start + step])
                bar.update(len(seqs[start: start + step]) // k)
        return out.reshape(n, k)

    def _verbalizer_scores(self, texts: list[str], progress: bool) -> np.ndarray:
        seqs = self._encode([self.config.verbalizer_template.format(text=t) for t in texts])
        label_ids = np.array(self.label_token_ids())
        out = np.zeros((len(texts), len(self.labels)))
        with scoring_progress(len(texts), "scoring (verbalizer)", progress) as bar:
            for batch in self._batches(seqs):
                rows = [seqs[i] for i in batch]
                logp = np.asarray(self.model.forward_batch(rows, return_log_probs=True))
                last = np.array([len(r) - 1 for r in rows])
                out[batch] = -logp[np.arange(len(rows)), last][:, label_ids]
                bar.update(len(batch))
        return out


# ---------------------------------------------------------------- factories used by the stages

def make_ct2_sampler(cfg: Any, settings: SamplingSettings) -> CT2Sampler:
    """The generation stage's sampler for ``generate.backend = ctranslate2``."""
    g = cfg.generate
    return CT2Sampler(cfg.generator, settings, g.batch_size, compute_type=g.ct2_compute_type,
                      device=cfg.device)


def make_ct2_scorer(name: str, labels: Sequence[str], scoring: Any, device: str = "cpu") -> CT2Scorer:
    """The relabel / Prompting scorer for ``scoring.backend = ctranslate2``."""
    return CT2Scorer(name, labels, scoring, compute_type=scoring.ct2_compute_type, device=device)

