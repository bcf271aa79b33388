"""The vLLM backend (``generate.backend`` / ``scoring.backend = vllm``) without vLLM or a GPU.

vLLM needs CUDA, so here it is replaced by a fake ``vllm`` module whose ``LLM`` answers with a tiny
PyTorch model: the request mapping (the paper's sampling settings, one seed per row, the stop tokens) and
the scoring arithmetic (prompt log-probs -> the nll and verbalizer scores of the PyTorch scorer) are
tested; so are the one-line errors without vllm or without a GPU. The real engine runs only in
``test_vllm_on_a_gpu``, which is skipped (saying so) where vllm or a GPU is missing, as in CI.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unigen.cli import main
from unigen.config import load_config
from unigen.errors import ModelNotAvailable
from unigen.synth import vllm_backend
from unigen.synth.backends import make_sampler, make_scorer
from unigen.synth.common import generate_settings, scoring_settings
from unigen.synth.sampling import SamplingSettings, stop_token_mask
from unigen.synth.scoring import FastLMScorer
from unigen.synth.vllm_backend import VLLMSampler, VLLMScorer, sampling_params

from synth_fakes import tiny_llama


class FakeVLLM:
    """The parts of the ``vllm`` module the backend uses; ``LLM`` runs a PyTorch causal LM."""

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)
            self.kwargs = kwargs

    class LLM:
        def __init__(self, model, tokenizer):
            self.model, self.tokenizer, self.calls = model, tokenizer, []

        @torch.inference_mode()
        def generate(self, prompts, params, use_tqdm=True):
            self.calls.append((prompts, params))
            if isinstance(params, list):  # sampling: a fixed continuation per seed, up to a stop token
                out = []
                for p in params:
                    ids = self.tokenizer(f"row {p.seed % 1000} is fine\" tail", add_special_tokens=False)
                    ids = ids["input_ids"]
                    stop = next(i for i, t in enumerate(ids) if t in p.stop_token_ids)
                    out.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids[: stop + 1])]))
                return out
            out = []
            for prompt in prompts:  # prompt log-probs of token ids
                ids = prompt["prompt_token_ids"]
                logp = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), -1)
                lps = [None] + [{ids[t]: SimpleNamespace(logprob=float(logp[t - 1, ids[t]]))}
                                for t in range(1, len(ids))]
                out.append(SimpleNamespace(prompt_logprobs=lps))
            return out


@pytest.fixture(scope="module")
def lm():
    return tiny_llama()


def test_sampling_params_are_the_papers_settings():
    settings = SamplingSettings(top_k=40, top_p=0.9, temperature=1.0, max_new_tokens=31)
    p = sampling_params(FakeVLLM, settings, 2**63 - 5, [7, 2])
    assert p.kwargs == {"n": 1, "temperature": 1.0, "top_p": 0.9, "top_k": 40, "max_tokens": 31,
                        "seed": 2**63 - 5, "stop_token_ids": [7, 2], "include_stop_str_in_output": True,
                        "skip_special_tokens": True}
    off = sampling_params(FakeVLLM, SamplingSettings(top_k=0), 1, [])
    assert off.top_k == -1  # our 0 (no top-k) is vLLM's -1


def test_sampler_one_request_per_row_seed(lm):
    model, tok = lm
    llm = FakeVLLM.LLM(model, tok)
    sampler = VLLMSampler("tiny", SamplingSettings(max_new_tokens=31), llm=llm, tokenizer=tok, vllm=FakeVLLM)
    mask = stop_token_mask(tok, len(tok), [tok.eos_token_id])
    assert sampler.stop_ids == mask.nonzero()[:, 0].tolist() and tok.eos_token_id in sampler.stop_ids
    out = sampler.sample('The text in positive sentiment is: "', [5, 1005, 6])
    prompts, params = llm.calls[-1]
    assert prompts == ['The text in positive sentiment is: "'] * 3
    assert [p.seed for p in params] == [5, 1005, 6]
    assert out[0].text == out[1].text == 'row 5 is fine"' and out[2].text.startswith("row 6")
    assert out[0].n_tokens == len(out[0].ids) and sampler.sample("x", []) == []
    sampler.sample("x", [1, 2], max_new_tokens=160)  # a length class's budget, for this call only
    assert [p.max_tokens for p in llm.calls[-1][1]] == [160, 160] and sampler.settings.max_new_tokens == 31


@pytest.mark.parametrize("rule", ["nll", "verbalizer"])
def test_scorer_equals_the_pytorch_scorer(lm, rule):
    model, tok = lm
    cfg = load_config(None, [f"scoring.rule={rule}"])
    texts = ["I loved this movie, it was great!", "The food was cold.", "ok", "Terrible battery."]
    want = FastLMScorer(model, tok, cfg.labels, cfg.scoring).scores(texts)
    scorer = VLLMScorer("tiny", cfg.labels, cfg.scoring, llm=FakeVLLM.LLM(model, tok), tokenizer=tok,
                        vllm=FakeVLLM)
    scorer.chunk = 3  # several generate calls
    np.testing.assert_allclose(scorer.scores(texts), want, atol=1e-4)


def test_verbalizer_variants_equal_the_pytorch_scorer(lm):
    model, tok = lm
    cfg = load_config(None, ["scoring.rule=verbalizer", "scoring.verbalizer_extra_label_words=[bad|good]",
                             "scoring.verbalizer_extra_templates=['{text} It was']"])
    texts = ["I loved this movie, it was great!", "The food was cold.", "ok"]
    want = FastLMScorer(model, tok, cfg.labels, cfg.scoring).scores(texts)
    scorer = VLLMScorer("tiny", cfg.labels, cfg.scoring, llm=FakeVLLM.LLM(model, tok), tokenizer=tok,
                        vllm=FakeVLLM)
    np.testing.assert_allclose(scorer.scores(texts), want, atol=1e-4)


def test_without_vllm_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    cfg = load_config(None, ["generate.backend=vllm", "scoring.backend=vllm"])
    with pytest.raises(ModelNotAvailable, match="needs the vllm package and a CUDA GPU: pip install vllm"):
        make_sampler(cfg)
    with pytest.raises(ModelNotAvailable, match="pip install vllm"):
        make_scorer(cfg)
    assert main(["generate", "--output", str(tmp_path / "g"), "--quiet", "--set", "generate.backend=vllm",
                 "--set", "generate.samples_per_label=4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unigen: error: the vllm backend needs the vllm package") and "\n" not in err


def test_without_a_gpu_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", FakeVLLM)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelNotAvailable, match="needs a CUDA GPU and none is visible"):
        vllm_backend.check_available()
    with pytest.raises(ModelNotAvailable, match="CUDA GPU"):
        make_sampler(load_config(None, ["generate.backend=vllm"]))


def test_vllm_in_the_fingerprint_without_ct2_settings():
    cfg = load_config(None, ["generate.backend=vllm", "scoring.backend=vllm"])
    assert generate_settings(cfg)["generate"]["backend"] == "vllm"
    assert "ct2_compute_type" not in generate_settings(cfg)["generate"]
    assert "batch_size" not in generate_settings(cfg)["generate"]  # rows are seeded one by one
    assert scoring_settings(cfg)["backend"] == "vllm" and "ct2_compute_type" not in scoring_settings(cfg)


def test_vllm_on_a_gpu(tmp_path):
    pytest.importorskip("vllm", reason="vllm is not installed: the real vLLM path runs on GPU machines only")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the real vLLM path runs on GPU machines only")
    cfg = load_config(None, ["generate.backend=vllm", "scoring.backend=vllm", "generate.samples_per_label=64",
                             "generate.shard_size=64"])
    from unigen.stages import Stage
    from unigen.synth.generate_stage import generate_stage
    from unigen.synth.relabel_stage import relabel_stage

    gen = generate_stage(cfg, tmp_path, progress=False)
    rel = relabel_stage(cfg, tmp_path, progress=False)
    assert Stage.load(gen).manifest["counts"]["rows"] == 128
    assert Stage.load(rel).manifest["counts"]["rows"] == 128
