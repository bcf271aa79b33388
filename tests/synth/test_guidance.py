"""Guided sampling (``generate.guidance``): the sampler against a full-forward reference, reproducibility,
the stage end to end (resume, Ray worker, data card) and the settings' errors."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
import torch

from unigen.config import ConfigError, load_config
from unigen.stages import Stage
from unigen.synth import sampling as sampling_module
from unigen.synth.backends import make_sampler
from unigen.synth.common import generate_fingerprint, generate_settings
from unigen.synth.generate_stage import generate_stage, plan_generation, prompt_stems, sample_shard
from unigen.synth.guidance import GuidedSampler
from unigen.synth.ray_executor import GenerateWorker
from unigen.synth.sampling import (
    LMSampler,
    SamplingSettings,
    filtered_distribution,
    row_uniforms,
    sample_tokens,
)

from synth_fakes import FakeSampler, Killed, tiny_gpt2, tiny_llama

PROMPT = 'The text in positive sentiment is: "'
CONTRAST = 'The text in negative sentiment is: "'
SETTINGS = SamplingSettings(top_k=40, top_p=0.9, max_new_tokens=10)
SEEDS = list(range(9))


def cfg_for(*overrides: str):
    return load_config(None, ["generate.samples_per_label=6", "generate.shard_size=4",
                              "generate.backend=transformers", "generate.lengths=[]",
                              "generate.max_new_tokens=8", *overrides])


def ids_of(rows):
    return [r.ids for r in rows]


def reference_logits(model, tok, prompts, guidance, prefix):
    """The guided next-token logits after ``prefix`` from full forwards (no cache): the formula itself."""
    logps = []
    for p in prompts:
        ids = tok(p)["input_ids"] + list(prefix)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        logps.append(torch.log_softmax(logits, -1))
    return (1 + guidance) * logps[0] - guidance * torch.stack(logps[1:]).mean(0)


# ---------------------------------------------------------------- the sampler

@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
def test_guidance_zero_is_the_plain_sampler(make):
    model, tok = make()
    plain = LMSampler(model, tok, SETTINGS, batch_size=4).sample(PROMPT, SEEDS)
    fixed = LMSampler(model, tok, SETTINGS, batch_size=4, refill=False).sample(PROMPT, SEEDS)
    guided = GuidedSampler(model, tok, SETTINGS, 0.0, batch_size=4)
    assert ids_of(guided.sample(PROMPT, SEEDS)) == ids_of(fixed) == ids_of(plain)
    assert [r.text for r in guided.sample(PROMPT, SEEDS, contrast=[CONTRAST])] == [r.text for r in plain]
    assert guided.tokens_generated == 2 * sum(r.n_tokens for r in plain)


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
@pytest.mark.parametrize("contrast", [
    [CONTRAST],  # same token length as the prompt
    ['The text in awful boring terrible sentiment is: "', 'The text in good sentiment is: "'],  # padded
])
def test_guided_distribution_is_the_formula_of_two_full_forwards(make, contrast, monkeypatch):
    model, tok = make()
    g = 1.5
    seen: list[torch.Tensor] = []

    def recording(logits, settings):
        seen.append(logits.clone())
        return filtered_distribution(logits, settings)

    monkeypatch.setattr(sampling_module, "filtered_distribution", recording)  # the shared decoding loop
    sampler = GuidedSampler(model, tok, SETTINGS, g, batch_size=len(SEEDS))
    rows = sampler.sample(PROMPT, SEEDS, contrast=contrast)
    lengths = {len(tok(p)["input_ids"]) for p in [PROMPT, *contrast]}
    assert (len(lengths) > 1) == (len(contrast) == 2)  # the second case pads the shorter prompts
    uniforms = row_uniforms(SEEDS, SETTINGS.max_new_tokens)
    stop = LMSampler(model, tok, SETTINGS).stop_mask
    for step, logits in enumerate(seen):  # the live rows of a step: the rows that sampled that many tokens
        live = [i for i, r in enumerate(rows) if len(r.ids) > step]
        assert logits.shape[0] == len(live)
        for k, i in enumerate(live):
            want = reference_logits(model, tok, [PROMPT, *contrast], g, rows[i].ids[:step])
            torch.testing.assert_close(logits[k], want, atol=2e-4, rtol=1e-4)
            ids, probs = filtered_distribution(want[None], SETTINGS)  # the token is the formula's sample
            assert sample_tokens(ids, probs, uniforms[i, step: step + 1]).item() == rows[i].ids[step]
    for r in rows:  # stops exactly as LMSampler: at its first stop token, or at the budget
        stopped = [bool(stop[t]) for t in r.ids]
        assert not any(stopped[:-1]) and (stopped[-1] or len(r.ids) == SETTINGS.max_new_tokens)
    assert len(seen) == max(len(r.ids) for r in rows)
    plain = LMSampler(model, tok, SETTINGS).sample(PROMPT, SEEDS)
    assert ids_of(rows) != ids_of(plain)  # guidance changes the texts


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
def test_guided_rows_depend_on_their_seed_only(make):
    model, tok = make()
    contrast = ['The text in negative sentiment is: "', 'The text in neutral sentiment is: "']
    rows = GuidedSampler(model, tok, SETTINGS, 2.0, batch_size=9).sample(PROMPT, SEEDS, contrast=contrast)
    for batch_size in (1, 4):
        again = GuidedSampler(model, tok, SETTINGS, 2.0, batch_size=batch_size)
        assert ids_of(again.sample(PROMPT, SEEDS, contrast=contrast)) == ids_of(rows)
    separate = GuidedSampler(model, tok, SETTINGS, 2.0, batch_size=3, stack=False)  # one forward per prompt
    assert ids_of(separate.sample(PROMPT, SEEDS, contrast=contrast)) == ids_of(rows)
    reversed_seeds = GuidedSampler(model, tok, SETTINGS, 2.0, batch_size=4).sample(
        PROMPT, SEEDS[::-1], contrast=contrast)
    assert ids_of(reversed_seeds) == ids_of(rows)[::-1]
    short = GuidedSampler(model, tok, SETTINGS, 2.0).sample(PROMPT, SEEDS, max_new_tokens=3,
                                                            contrast=contrast)
    assert all(len(s.ids) <= 3 and s.ids == r.ids[: len(s.ids)] for s, r in zip(short, rows))


def test_guided_sampler_refuses_a_missing_contrast_or_negative_guidance():
    model, tok = tiny_llama()
    with pytest.raises(ValueError, match="contrast"):
        GuidedSampler(model, tok, SETTINGS, 1.0).sample(PROMPT, [0])
    with pytest.raises(ValueError, match="guidance must be >= 0"):
        GuidedSampler(model, tok, SETTINGS, -1.0)


# ---------------------------------------------------------------- settings

@pytest.mark.parametrize("overrides, match", [
    (["generate.guidance=-0.5"], "generate.guidance must be >= 0"),
    (["generate.guidance=nan", "generate.backend=transformers"], "generate.guidance must be >= 0"),
    (["generate.guidance=1"], "transformers backend only, not ctranslate2: add --set generate.backend=tra"),
    (["generate.guidance=1", "generate.backend=vllm"], "transformers backend only, not vllm"),
])
def test_bad_guidance_settings(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_make_sampler_refuses_guidance_on_another_backend():
    cfg = load_config(None, [])
    object.__setattr__(cfg.generate, "guidance", 1.0)  # past GenerateConfig's own check
    with pytest.raises(ConfigError, match="--set generate.backend=transformers"):
        make_sampler(cfg, tiny_llama())
    guided = make_sampler(cfg_for("generate.guidance=0.5"), tiny_llama())
    assert isinstance(guided, GuidedSampler) and guided.guidance == 0.5
    assert type(make_sampler(cfg_for(), tiny_llama())) is LMSampler


def test_guidance_off_leaves_the_fingerprint_alone():
    cfg = cfg_for()
    assert "guidance" not in generate_settings(cfg)["generate"]
    explicit = cfg_for("generate.guidance=0")
    assert generate_fingerprint(explicit) == generate_fingerprint(cfg)
    on = cfg_for("generate.guidance=1.0")
    assert generate_settings(on)["generate"]["guidance"] == 1.0
    assert generate_fingerprint(on) != generate_fingerprint(cfg)


# ---------------------------------------------------------------- the stage

class Recording(FakeSampler):
    """:class:`FakeSampler` that takes ``contrast`` and records every call's prompt and contrast."""

    def __init__(self):
        super().__init__()
        self.log: list[tuple[str, tuple[str, ...], int | None]] = []

    def sample(self, prompt, seeds, *, max_new_tokens=None, contrast=()):
        self.log.append((prompt, tuple(contrast), max_new_tokens))
        return super().sample(prompt, seeds)


def test_the_stage_passes_the_other_labels_prompts_of_the_same_domain_and_length(tmp_path):
    cfg = cfg_for("generate.guidance=1", "generate.prompt_set=combined", "generate.lengths=sentence,long",
                  "labels=[negative, neutral, positive]", "generate.samples_per_label=20")
    sampler = Recording()
    generate_stage(cfg, tmp_path, progress=False, sampler=sampler)
    assert {budget for _, _, budget in sampler.log} == {31, 160}
    for prompt, contrast, _ in sampler.log:
        words = [w for w in cfg.labels if f" in {w} sentiment" in prompt]
        others = [w for w in cfg.labels if w not in words]
        assert len(words) == 1 and contrast == tuple(prompt.replace(words[0], w) for w in others)
    assert len({p for p, _, _ in sampler.log}) == 3 * 5 * 2  # labels x domains x lengths
    plain = Recording()
    generate_stage(cfg_for("generate.prompt_set=combined"), tmp_path, progress=False, sampler=plain)
    assert all(contrast == () for _, contrast, _ in plain.log)


def test_generate_stage_with_guidance_end_to_end(tmp_path):
    cfg = cfg_for("generate.guidance=2", "labels=[negative, neutral, positive]")
    lm = tiny_llama()
    out = generate_stage(cfg, tmp_path, progress=False, lm=lm)
    st = Stage.load(out, "generate")
    rows = list(st.iter_rows())
    assert len(rows) == 18 and sorted({r["prompt_label"] for r in rows}) == [0, 1, 2]
    assert st.manifest["config"]["generate"]["guidance"] == 2.0
    assert "guidance 2.0 (each token sampled from p(x|label)^3 / p(x|other labels)^2" in (
        out / "datacard.md").read_text()
    plain = generate_stage(cfg_for("labels=[negative, neutral, positive]"), tmp_path, progress=False, lm=lm)
    assert plain != out and "guidance" not in (plain / "datacard.md").read_text()
    assert "guidance" not in Stage.load(plain).manifest["config"]["generate"]
    assert [r["text"] for r in Stage.load(plain).iter_rows()] != [r["text"] for r in rows]


def test_kill_and_resume_with_guidance(tmp_path):
    cfg = cfg_for("generate.guidance=1", "generate.lengths=[]", "generate.max_new_tokens=6")
    lm = tiny_gpt2()
    reference = list(Stage.load(generate_stage(cfg, tmp_path / "a", progress=False, lm=lm)).iter_rows())

    class Dying:
        def __init__(self, inner, after):
            self.inner, self.left = inner, after

        def sample(self, prompt, seeds, **kwargs):
            self.left -= 1
            if self.left < 0:
                raise Killed("kill")
            return self.inner.sample(prompt, seeds, **kwargs)

    with pytest.raises(Killed):
        generate_stage(cfg, tmp_path / "b", progress=False, sampler=Dying(make_sampler(cfg, lm), 2))
    out = generate_stage(cfg, tmp_path / "b", progress=False, lm=lm)
    assert list(Stage.load(out).iter_rows()) == reference
    assert Stage.load(out).manifest["resumes"] >= 1


def test_a_ray_worker_builds_the_guided_sampler_and_gives_the_local_rows(monkeypatch):
    """The Ray executor's actor code path (without Ray): make_sampler on the actor, sample_shard passes the
    contrast prompts, so a shard's rows are the local executor's."""
    cfg = cfg_for("generate.guidance=1", "generate.dedup=false")
    lm = tiny_llama()
    specs = plan_generation(cfg)
    local = sample_shard(make_sampler(cfg, lm), specs[1], cfg, None, prompt_stems(cfg))[0]
    monkeypatch.setitem(sys.modules, "ray", SimpleNamespace(get=lambda x: x))
    worker = GenerateWorker(cfg, specs, prompt_stems(cfg), sample_shard, None, lm=lm)
    assert json.loads(worker.shard(1))["rows"] == local
    assert isinstance(worker.sampler(), GuidedSampler)
