"""vLLM backend for generation and scoring on GPUs (``generate.backend`` / ``scoring.backend = vllm``).

* :class:`VLLMSampler` implements :class:`unigen.synth.sampling.TextSampler` with ``LLM.generate``: one
  request per row seed (``SamplingParams.seed``), so a row's text depends on its seed alone, not on the
  batch, as with :class:`~unigen.synth.sampling.LMSampler`. The paper's settings map one to one
  (:func:`sampling_params`: top-k, top-p, temperature, ``max_new_tokens``); a row stops at its first
  token whose text holds a double quote or a newline, or EOS, and that token is kept (the same stop
  tokens as the other backends, :func:`unigen.synth.sampling.stop_token_mask`). Texts are decoded from
  the sampled token ids with the model's tokenizer, as :class:`~unigen.synth.ct2_backend.CT2Sampler` does.
* :class:`VLLMScorer` is :class:`unigen.synth.scoring.LMScorer` (same templates, truncation,
  calibration) with the forward passes replaced by prompt log-probs (``SamplingParams.prompt_logprobs``):
  the nll rule averages the log-probs of tokens 2..T of each filled template; the verbalizer rule
  appends each label's first token to the prompt and reads its log-prob (one request per label, the
  shared prefix cached by vLLM).

Availability. vLLM needs its package (CUDA wheels, gigabytes: ``pip install vllm``) and a CUDA GPU; without
either, building a sampler or scorer raises :class:`~unigen.errors.ModelNotAvailable` with one line.
One ``vllm.LLM`` is built per process and model (:func:`shared_llm`) and serves sampler and scorer.
Not run on a GPU yet: the request mapping and the scoring arithmetic are tested with a fake ``vllm``
module backed by a tiny PyTorch model (tests/synth/test_vllm.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from unigen.errors import ModelNotAvailable
from unigen.synth.sampling import Continuation, SamplingSettings, eos_token_ids, stop_token_mask
from unigen.synth.scoring import LMScorer, scoring_progress

#: fraction of the GPU memory vLLM may take (weights + KV cache)
GPU_MEMORY_UTILIZATION = 0.85
_LLMS: dict[str, Any] = {}


def _vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise ModelNotAvailable(
            "the vllm backend needs the vllm package and a CUDA GPU: pip install vllm on a GPU machine "
            "(or use generate.backend / scoring.backend = ctranslate2 or transformers)"
        ) from None
    return vllm


def _require_gpu() -> None:
    import torch

    if not torch.cuda.is_available():
        raise ModelNotAvailable(
            "the vllm backend needs a CUDA GPU and none is visible here (with run.executor=ray give the "
            "actors one: run.gpus_per_actor=1); or use the ctranslate2 or transformers backend"
        )


def check_available() -> Any:
    """The ``vllm`` module, after checking that it is installed and a GPU is visible (one-line errors)."""
    vllm = _vllm()
    _require_gpu()
    return vllm


def shared_llm(name: str) -> Any:
    """The process's ``vllm.LLM`` of model ``name`` (a local folder or registry name), built once."""
    if name not in _LLMS:
        from unigen.synth.ct2_backend import source_folder

        vllm = check_available()
        folder = str(source_folder(name))
        _LLMS[name] = vllm.LLM(model=folder, tokenizer=folder, dtype="auto", seed=0,
                               gpu_memory_utilization=GPU_MEMORY_UTILIZATION, enable_prefix_caching=True)
    return _LLMS[name]


def sampling_params(vllm: Any, settings: SamplingSettings, seed: int, stop_ids: Sequence[int]) -> Any:
    """``vllm.SamplingParams`` of one row: the paper's sampling settings and the row's own seed."""
    return vllm.SamplingParams(
        n=1,
        temperature=settings.temperature,
        top_p=settings.top_p,
        top_k=settings.top_k if settings.top_k > 0 else -1,  # -1: off (our 0)
        max_tokens=settings.max_new_tokens,
        seed=int(seed),
        stop_token_ids=list(stop_ids),
        include_stop_str_in_output=True,  # the stop token is kept, as the other samplers do
        skip_special_tokens=True,
    )


class VLLMSampler:
    """:class:`unigen.synth.sampling.TextSampler` on ``vllm.LLM`` (module docstring)."""

    def __init__(self, name: str, settings: SamplingSettings, *, llm: Any = None, tokenizer: Any = None,
                 vllm: Any = None, generation_config: Any = None):
        self.vllm = vllm or check_available()
        self.llm = llm if llm is not None else shared_llm(name)
        if tokenizer is None:
            from unigen.synth.ct2_backend import _generation_config, load_tokenizer

            tokenizer, generation_config = load_tokenizer(name), _generation_config(name)
        self.tokenizer = tokenizer
        self.settings = settings
        eos = eos_token_ids(SimpleNamespace(generation_config=generation_config), tokenizer)
        mask = stop_token_mask(tokenizer, len(tokenizer), eos)
        self.stop_ids = [int(i) for i in mask.nonzero()[:, 0].tolist()]
        self.tokens_generated = 0

    def sample(self, prompt: str, seeds: Sequence[int], *,
               max_new_tokens: int | None = None) -> list[Continuation]:
        """Continue ``prompt`` once per seed, with at most ``max_new_tokens`` new tokens (default: the
        settings')."""
        if not seeds:
            return []
        settings = self.settings
        if max_new_tokens:
            settings = dataclasses.replace(settings, max_new_tokens=max_new_tokens)
        params = [sampling_params(self.vllm, settings, s, self.stop_ids) for s in seeds]
        results = self.llm.generate([prompt] * len(seeds), params, use_tqdm=False)
        out = []
        for r in results:
            ids = list(r.outputs[0].token_ids)[: settings.max_new_tokens]
            self.tokens_generated += len(ids)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            out.append(Continuation(text, len(ids), tuple(ids)))
        return out


class VLLMScorer(LMScorer):
    """:class:`unigen.synth.scoring.LMScorer` whose forward passes are vLLM prompt log-probs."""

    #: sequences per ``LLM.generate`` call (vLLM batches inside a call)
    chunk = 4096

    def __init__(self, name: str, labels: Sequence[str], config: Any = None, *, llm: Any = None,
                 tokenizer: Any = None, vllm: Any = None):
        from unigen.config import ScoringConfig

        self.config = config or ScoringConfig()
        if self.config.include_padding:
            raise ModelNotAvailable("scoring.include_padding (the paper code's padding quirk) needs "
                                    "scoring.backend=transformers")
        self.vllm = vllm or check_available()
        self.llm = llm if llm is not None else shared_llm(name)
        if tokenizer is None:
            from unigen.synth.ct2_backend import load_tokenizer

            tokenizer = load_tokenizer(name)
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.labels = tuple(labels)
        self.device = "cuda"
        self._label_token_ids: list[int] | None = None
        self._content_free: np.ndarray | None = None

    def _prompt_logprobs(self, seqs: list[list[int]]) -> list[list[float]]:
        """Log-probs of tokens 2..T of each sequence (given its prefix)."""
        params = self.vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        out: list[list[float]] = []
        for start in range(0, len(seqs), self.chunk):
            part = seqs[start: start + self.chunk]
            results = self.llm.generate([{"prompt_token_ids": s} for s in part], params, use_tqdm=False)
            for seq, r in zip(part, results):
                out.append([float(d[tok].logprob) for d, tok in zip(r.prompt_logprobs[1:], seq[1:])])
        return out

    def sequence_nll(self, seqs: list[list[int]]) -> np.ndarray:
        out = np.zeros(len(seqs), dtype=np.float64)
        todo = [i for i, s in enumerate(seqs) if len(s) > 1]
        for i, lps in zip(todo, self._prompt_logprobs([seqs[i] for i in todo])):
            out[i] = -float(np.mean(lps))
        return out

    def _nll_scores(self, texts: list[str], template: str, progress: bool) -> np.ndarray:
        n, k = len(texts), len(self.labels)
        seqs = self._encode([template.format(label=lab, text=t) for t in texts for lab in self.labels])
        out = np.zeros(n * k)
        with scoring_progress(n, "scoring (nll, vllm)", progress) as bar:
            for start in range(0, len(seqs), self.chunk):
                out[start: start + self.chunk] = self.sequence_nll(seqs[start: start + self.chunk])
                bar.update(len(seqs[start: start + self.chunk]) // k)
        return out.reshape(n, k)

    def _verbalizer_scores(self, texts: list[str], progress: bool) -> np.ndarray:
        seqs = self._encode([self.config.verbalizer_template.format(text=t) for t in texts])
        label_ids = self.label_token_ids()
        k = len(label_ids)
        out = np.zeros((len(texts), k))
        step = max(1, self.chunk // k)
        with scoring_progress(len(texts), "scoring (verbalizer, vllm)", progress) as bar:
            for start in range(0, len(seqs), step):
                part = seqs[start: start + step]
                lps = self._prompt_logprobs([s + [lid] for s in part for lid in label_ids])
                out[start: start + len(part)] = -np.array([lp[-1] for lp in lps]).reshape(len(part), k)
                bar.update(len(part))
        return out


# ---------------------------------------------------------------- factories used by the stages

def make_vllm_sampler(cfg: Any, settings: SamplingSettings) -> VLLMSampler:
    """The generation stage's sampler for ``generate.backend = vllm``."""
    return VLLMSampler(cfg.generator, settings)


def make_vllm_scorer(name: str, labels: Sequence[str], scoring: Any) -> VLLMScorer:
    """The relabel / Prompting scorer for ``scoring.backend = vllm``."""
    return VLLMScorer(name, labels, scoring)
