"""``unigen adapt`` on tiny models: the pure cores, the stage (prior and self-training), the Python API and
the command line, bad inputs, kill and resume, labels ignored, the offset through save/load/ONNX, the card."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from unigen.adaptation import stage as adapt_module
from unigen.adaptation.distill import distill_rows
from unigen.adaptation.lm_scores import lm_sample_index
from unigen.adaptation.priors import agreement_prior, em_prior, hard_share, logit_offset, softmax
from unigen.adaptation.pseudo_labels import mix_rows, pseudo_labels, select_per_class
from unigen.adaptation.stage import adapt_stage
from unigen.cli import main
from unigen.config import ConfigError, load_config
from unigen.errors import DataError, ModelNotAvailable
from unigen.tam.model import TaskModel

from tam_helpers import LABELS, NEGATIVE, POSITIVE, fake_vectors, fit_briefly, make_tiny_bert, sentiment_rows

FRAMES = ["the {s} was {w} .", "i found this {s} {w} !", "so {w} , really {w}", "it is very {w} ."]
SUBJECTS = ["movie", "food", "phone"]
TINY = ["adapt.min_texts=10", "adapt.max_pseudo=40", "adapt.lm_sample=60", "train.batch_size=8", "device=cpu",
        "train.precision=fp32"]


class WordScorer:
    """A fake calibrated verbalizer: a text with a positive word scores low (likely) under ``positive``."""

    def __init__(self, fail: bool = False):
        self.calls = 0
        self.fail = fail

    def scores(self, texts, *, rule=None, template=None, progress=False):
        self.calls += 1
        if self.fail:
            raise AssertionError("the LM must not score again")
        out = np.zeros((len(texts), 2))
        for i, t in enumerate(texts):
            words = set(t.split())
            out[i] = [0.0, -0.3] if words & set(POSITIVE) else [-0.3, 0.0] if words & set(NEGATIVE) else 0.0
        return out


def domain_rows(n: int = 80, positive: float = 0.7, seed: int = 3) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(rng.random() < positive)
        word = (POSITIVE if label else NEGATIVE)[int(rng.integers(len(POSITIVE)))]
        text = FRAMES[i % len(FRAMES)].format(s=SUBJECTS[i % 3], w=word)
        rows.append({"id": i, "text": text, "label": label})
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A tiny fitted LSTM whose training record names its synthetic rows (a JSONL file)."""
    folder = tmp_path_factory.mktemp("adapt-base")
    rows = sentiment_rows(48)
    source = write_jsonl(folder / "synthetic.jsonl", rows)
    model = TaskModel.build("lstm", LABELS, texts=[r["text"] for r in rows],
                            vectors=fake_vectors(sentiment=1.0), lstm_hidden=8, projection_dim=16, seed=0)
    fit_briefly(model, rows, steps=20)
    return model.save_pretrained(folder / "model",
                                 training={"rows": len(rows), "seed": 0, "source": str(source)})


@pytest.fixture(scope="module")
def transformer_teacher(tmp_path_factory):
    """A tiny 4-layer BERT task model, briefly fitted, whose training record names its synthetic rows."""
    folder = tmp_path_factory.mktemp("adapt-teacher")
    rows = sentiment_rows(48)
    source = write_jsonl(folder / "synthetic.jsonl", rows)
    encoder = make_tiny_bert(folder / "encoder", layers=4)
    model = TaskModel.build(str(encoder), LABELS, max_length=16, projection_dim=16, seed=0)
    fit_briefly(model, rows, steps=20)
    return model.save_pretrained(folder / "model",
                                 training={"rows": len(rows), "seed": 0, "source": str(source)})


@pytest.fixture()
def texts_file(tmp_path):
    return write_jsonl(tmp_path / "reviews.jsonl", domain_rows())


def cfg(*extra):
    return load_config(None, [*TINY, *extra])


def weights(folder):
    return (folder / "model.safetensors").read_bytes()


# ---------------------------------------------------------------- pure cores

def test_em_recovers_a_label_shift_on_calibrated_probabilities():
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.8).astype(int)  # target prior 0.8 positive; source prior 0.5
    margin = rng.normal(loc=np.where(y == 1, 1.5, -1.5), scale=1.5)
    probs = softmax(np.stack([np.zeros_like(margin), margin * 1.5 / 1.125], axis=1))  # exact posterior
    prior = em_prior(probs, np.array([0.5, 0.5]))
    assert abs(prior[1] - 0.8) < 0.03


@pytest.mark.parametrize("target", [0.0, 0.1, 0.37, 0.5, 0.9, 1.0])
def test_the_binary_offset_predicts_exactly_the_prior(target):
    logits = np.random.default_rng(1).normal(size=(101, 2))
    delta = logit_offset(logits, np.array([1 - target, target]))
    assert hard_share(logits + delta)[1] == pytest.approx(round(target * 101) / 101)
    assert delta[0] == 0.0


def test_the_offset_for_three_classes_moves_the_shares_towards_the_prior():
    logits = np.random.default_rng(2).normal(size=(3000, 3))
    target = np.array([0.6, 0.3, 0.1])
    share = softmax(logits + logit_offset(logits, target)).mean(axis=0)
    np.testing.assert_allclose(share, target, atol=1e-3)


def test_agreement_prior_and_its_fallback():
    model, lm = np.array([1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1]), np.array([1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1])
    agree = model == lm
    np.testing.assert_allclose(agreement_prior(model, lm, 2), np.bincount(model[agree]) / agree.sum())
    np.testing.assert_allclose(agreement_prior(model, lm, 2, min_agree=100), np.bincount(lm) / len(lm))


def test_pseudo_labels_and_the_prior_matched_selection():
    p = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9], [0.45, 0.55]])
    q = np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels, conf, usable, _ = pseudo_labels("agreement", p, q)
    assert usable.tolist() == [True, False, True, True, True, True]
    np.testing.assert_allclose(conf[0], 0.85)
    # 4 rows at prior 0.5: two per class, the most confident usable ones
    assert select_per_class(labels, conf, usable, np.array([0.5, 0.5]), 4).tolist() == [0, 2, 3, 4]
    # prior 0.25/0.75 of 8 wanted: 2 negatives but only 3 positives -> scaled to keep the proportion 1:3
    assert select_per_class(labels, conf, usable, np.array([0.25, 0.75]), 8).tolist() == [0, 2, 4, 5]
    assert pseudo_labels("confidence", p, q)[0].tolist() == [0, 0, 1, 0, 1, 1]
    texts, targets, n = mix_rows(["a", "b"], np.eye(2), (["s1", "s2", "s3"], np.eye(2)[[0, 1, 1]]), 1.0, 0)
    assert n == 2 and texts[:2] == ["a", "b"] and len(targets) == 4
    assert lm_sample_index(10, 4, 0).tolist() == lm_sample_index(10, 4, 0).tolist() != list(range(4))


def test_distill_rows_sample_the_texts_and_keep_the_teachers_probabilities():
    texts = [f"t{i}" for i in range(10)]
    probs = np.linspace(0.05, 0.95, 10)[:, None] * np.array([[-1.0, 1.0]]) + np.array([[1.0, 0.0]])
    rows, targets, info = distill_rows(texts, probs, (["s1", "s2"], np.eye(2)), max_distill=4, targets="soft",
                                       synthetic_ratio=1.0, seed=0)
    assert info == {"distilled_texts": 4, "synthetic_rows": 2, "teacher_positive_share": info[
        "teacher_positive_share"]}
    assert rows[4:] == ["s1", "s2"] and len(set(rows[:4])) == 4
    for text, target in zip(rows[:4], targets[:4]):
        np.testing.assert_allclose(target, probs[int(text[1:])], atol=1e-6)
    _, hard, _ = distill_rows(texts, probs, None, max_distill=10, targets="hard", synthetic_ratio=1.0, seed=0)
    assert hard.tolist() == [[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5
    assert distill_rows(texts, probs, None, max_distill=4, targets="soft", synthetic_ratio=0, seed=0)[0] == \
        distill_rows(texts, probs, None, max_distill=4, targets="soft", synthetic_ratio=0, seed=0)[0]


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="adapt.prior"):
        load_config(None, ["adapt.prior=median"])
    with pytest.raises(ConfigError, match="lm_sample=0"):
        load_config(None, ["adapt.lm_sample=0"])
    load_config(None, ["adapt.lm_sample=0", "adapt.prior=model_em", "adapt.pseudo_labels=model"])
    with pytest.raises(ConfigError, match="adapt.targets"):
        load_config(None, ["adapt.targets=fuzzy"])
    assert load_config(None, ["adapt.method=distill"]).adapt.resolved_targets() == "soft"
    assert load_config(None, []).adapt.resolved_targets() == "hard"
    with pytest.raises(ConfigError, match="adapt.student_layers must be at least 1"):
        load_config(None, ["adapt.student_layers=0"])
    assert load_config(None, ["adapt.student=teacher", "adapt.student_layers=3"]).adapt.student_layers == 3


def test_the_new_student_setting_leaves_default_fingerprints_alone():
    from unigen.config import fingerprint_dict

    default = fingerprint_dict(load_config(None, []).adapt)
    assert "student_layers" not in default and default["student"] == "minilm-l6"
    assert fingerprint_dict(load_config(None, ["adapt.student_layers=4"]).adapt)["student_layers"] == 4


# ---------------------------------------------------------------- the stage

def test_prior_moves_the_threshold_to_the_lm_share_and_the_card_names_the_data(base_model, texts_file,
                                                                                 tmp_path):
    config = cfg("adapt.method=prior", "adapt.prior=lm")
    out = adapt_stage(config, base_model, texts_file, path=tmp_path / "a", progress=False,
                      scorer=WordScorer())
    model = TaskModel.from_pretrained(out / "model")
    texts = [r["text"] for r in domain_rows()]
    record = json.loads((out / "model" / "unigen_tam.json").read_text())
    a = record["training"]["adaptation"]
    sample = [texts[i] for i in lm_sample_index(len(texts), 60, config.seed)]  # adapt.lm_sample=60
    lm_share = WordScorer().scores(sample).argmin(axis=1).mean()
    assert a["prior"]["positive"] == pytest.approx(lm_share, abs=1e-4)
    assert (model.predict_proba(texts).argmax(1) == 1).mean() == pytest.approx(lm_share, abs=1.5 / len(texts))
    original = TaskModel.from_pretrained(base_model)
    shift = model.classifier[-1].bias.detach().numpy() - original.classifier[-1].bias.detach().numpy()
    np.testing.assert_allclose(shift, a["logit_offset"], atol=1e-5)
    assert a["data"]["rows"] == 80 and a["data"]["file"] == "reviews.jsonl"
    assert a["model_texts"] == a["lm_texts"] == 60  # the threshold and the prior come from the LM's sample
    assert a["data"]["unread_columns"] == ["id", "label"]
    card = (out / "model" / "README.md").read_text()
    assert "## Adaptation" in card and "reviews.jsonl" in card and a["data"]["sha256"] in card
    assert "80 unlabeled texts" in card and "No label of that file was read" in card and "`prior`" in card
    assert "## Training data" in card  # the original training is still described
    # the finished stage is reused: no scoring, no training
    assert adapt_stage(config, base_model, texts_file, path=tmp_path / "a", progress=False,
                       scorer=WordScorer(fail=True)) == out


def test_a_sibling_adaptation_of_the_same_texts_lends_its_lm_scores(base_model, texts_file, tmp_path):
    first = adapt_stage(cfg("adapt.method=prior", "adapt.prior=lm"), base_model, texts_file,
                        path=tmp_path / "w" / "first", progress=False, scorer=WordScorer())
    # other adapt settings, same texts, labeler and scoring: the scores are copied, not scored again
    second = adapt_stage(cfg("adapt.method=prior", "adapt.prior=agreement"), base_model, texts_file,
                         path=tmp_path / "w" / "second", progress=False, scorer=WordScorer(fail=True))
    a, b = (json.loads((f / "lm.json").read_text()) for f in (first, second))
    assert b["scores"] == a["scores"] and b["texts_sha256"] == a["texts_sha256"]
    assert b["reused_from"] == str(first) and a["reused_from"] is None
    # other texts (a smaller LM sample) or another scoring setting: scored anew
    for extra, name in (("adapt.lm_sample=50", "third"), ("scoring.max_text_tokens=64", "fourth")):
        scorer = WordScorer()
        out = adapt_stage(cfg("adapt.method=prior", "adapt.prior=lm", extra), base_model, texts_file,
                          path=tmp_path / "w" / name, progress=False, scorer=scorer)
        assert scorer.calls == 1 and json.loads((out / "lm.json").read_text())["reused_from"] is None


def test_without_a_threshold_move_the_share_after_is_read_on_a_sample(base_model, texts_file, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(adapt_module, "SHARE_TEXTS", 30)
    calls = []
    real = adapt_module.model_logits
    monkeypatch.setattr(adapt_module, "model_logits", lambda model, texts, *a: calls.append(len(texts)) or
                        real(model, texts, *a))
    out = adapt_stage(cfg(), base_model, texts_file, path=tmp_path / "none", progress=False,
                      scorer=WordScorer())  # self_train keeps the model's threshold by default
    a = json.loads((out / "model" / "unigen_tam.json").read_text())["training"]["adaptation"]
    assert calls == [60, 30] and a["share_after_texts"] == 30 and a["logit_offset"] == [0.0, 0.0]
    assert a["prior_estimator"] == "none" and a["settings"]["prior"] is None
    assert "| prior | `none` |" in (out / "model" / "README.md").read_text()
    assert adapt_module.share_sample_index(80, 0).tolist() == adapt_module.share_sample_index(80, 0).tolist()
    calls.clear()  # a threshold move reads every text's logits after the round
    out = adapt_stage(cfg("adapt.prior=agreement"), base_model, texts_file, path=tmp_path / "agreement",
                      progress=False, scorer=WordScorer())
    assert calls == [60, 60]


def test_the_offset_survives_the_onnx_export(base_model, texts_file, tmp_path):
    pytest.importorskip("onnxruntime")
    from unigen.export.onnx_export import export_onnx
    from unigen.export.onnx_model import OnnxTaskModel

    config = cfg("adapt.method=prior", "adapt.prior=lm")
    out = adapt_stage(config, base_model, texts_file, path=tmp_path / "a", progress=False,
                      scorer=WordScorer())
    onnx = OnnxTaskModel.from_pretrained(export_onnx(out / "model", tmp_path / "onnx"))
    texts = [r["text"] for r in domain_rows()]
    np.testing.assert_allclose(onnx.predict_proba(texts), TaskModel.from_pretrained(out).predict_proba(texts),
                               atol=1e-4)


def test_self_training_through_the_python_api(base_model, texts_file, tmp_path):
    import unigen

    folder = unigen.adapt(base_model, texts_file, output=tmp_path / "st",
                          overrides=[*TINY, "adapt.prior=agreement"], progress=False, scorer=WordScorer())
    assert folder == tmp_path / "st" / "model"
    a = json.loads((folder / "unigen_tam.json").read_text())["training"]["adaptation"]
    (r,) = a["rounds"]
    assert a["method"] == "self_train" and r["pseudo_labelled"] > 0
    assert r["synthetic_rows"] == r["pseudo_labelled"]
    assert a["synthetic_from"].endswith("synthetic.jsonl")
    # on the LM's 60-text sample (the model reads only it), where repeated texts tie: within 2 texts
    assert a["model_texts"] == 60
    assert a["predicted_share_after"]["positive"] == pytest.approx(a["prior"]["positive"], abs=2.5 / 60)
    assert weights(folder) != weights(base_model)
    assert not (tmp_path / "st" / "rounds").exists()  # intermediate models are removed
    assert TaskModel.from_pretrained(tmp_path / "st").predict("so good , really good") in LABELS


def test_distill_trains_a_new_student_on_the_teachers_probabilities(base_model, texts_file, bert_dir,
                                                                    tmp_path):
    out = adapt_stage(cfg("adapt.method=distill", f"adapt.student={bert_dir}", "adapt.prior=none",
                          "adapt.epochs=2"), base_model, texts_file, path=tmp_path / "d", progress=False,
                      scorer=WordScorer(fail=True))  # prior none: no LM
    record = json.loads((out / "model" / "unigen_tam.json").read_text())
    student = TaskModel.from_pretrained(out / "model")
    teacher = TaskModel.from_pretrained(base_model)
    assert student.spec.architecture != teacher.spec.architecture == "lstm"
    a = record["training"]["adaptation"]
    assert a["method"] == "distill" and a["labeler"] is None and a["prior"] is None
    assert a["student"]["distilled_texts"] == a["model_texts"] == 80 and a["student"]["synthetic_rows"] == 48
    assert len(record["training"]["history"]) == 2 and a["student"]["encoder"] == str(bert_dir)
    assert not (out / "student").exists()  # the checkpoints are removed
    assert "distilled student" in (out / "model" / "README.md").read_text()
    assert student.predict("so good , really good") in LABELS


def test_the_teacher_with_layers_dropped_is_the_student(transformer_teacher, texts_file, tmp_path):
    """adapt.student=teacher: the student keeps 2 of the teacher's 4 layers, starts from its weights (with
    a learning rate too small to move them, it is still the teacher's layers; only the final threshold
    move is added to its bias, not the teacher's offset as well), and the record and card say so."""
    config = cfg("adapt.method=distill", "adapt.student=teacher", "adapt.student_layers=2",
                 "adapt.prior=balanced", "adapt.epochs=1", "adapt.lr=1e-12")
    out = adapt_stage(config, transformer_teacher, texts_file, path=tmp_path / "d", progress=False,
                      scorer=WordScorer(fail=True))  # prior balanced: no LM
    student = TaskModel.from_pretrained(out / "model")
    teacher = TaskModel.from_pretrained(transformer_teacher)
    assert (student.num_layers, teacher.num_layers) == (2, 4) and student.spec.encoder == teacher.spec.encoder
    a = json.loads((out / "model" / "unigen_tam.json").read_text())["training"]["adaptation"]
    s = a["student"]
    assert s["from_teacher"]
    assert (s["student_layers"], s["teacher_layers"], s["kept_layers"]) == (2, 4, [0, 3])
    assert s["encoder"] == teacher.spec.encoder and a["settings"]["student"] == "teacher"
    assert a["settings"]["student_layers"] == 2
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        source = key.replace("encoder.layer.1.", "encoder.layer.3.")
        if key == "classifier.1.bias":
            value = value - torch.tensor(a["logit_offset"], dtype=value.dtype)
        torch.testing.assert_close(value, t_state[source], rtol=0, atol=1e-6, msg=key)
    assert any(abs(x) > 1e-3 for x in s["teacher_offset"])  # an offset that would show if double-counted
    card = (out / "model" / "README.md").read_text()
    assert "the teacher's encoder" in card and "with 2 of its 4 layers (0, 3), warm-started" in card


def test_the_teacher_student_keeps_all_layers_and_learns(transformer_teacher, texts_file, tmp_path):
    """With every layer kept the student starts as the teacher (equal logits) and training moves it."""
    from unigen.adaptation.distill import distill_student, student_init

    config = cfg("adapt.method=distill", "adapt.student=teacher", "adapt.student_layers=4",
                 "adapt.prior=none", "adapt.epochs=1", "adapt.synthetic_ratio=0")
    teacher = TaskModel.from_pretrained(transformer_teacher)
    texts = [r["text"] for r in domain_rows()]
    np.testing.assert_allclose(student_init(config, transformer_teacher).logits(texts), teacher.logits(texts),
                               rtol=0, atol=1e-5)
    probs = softmax(teacher.logits(texts).astype(np.float64))
    result, info = distill_student(config, texts, probs, None, workdir=None, progress=False,
                                   teacher=transformer_teacher)
    assert result.model.num_layers == 4 and info["kept_layers"] == [0, 1, 2, 3]
    assert not np.allclose(result.model.to("cpu").logits(texts), teacher.logits(texts), atol=1e-4)
    with pytest.raises(ValueError, match="give the teacher model"):
        distill_student(config, texts, probs, None, workdir=None, progress=False)


def test_the_teacher_student_needs_a_transformer_teacher_with_enough_layers(base_model, transformer_teacher,
                                                                           texts_file, tmp_path, capsys):
    with pytest.raises(ConfigError, match="adapt.student=teacher .* is an LSTM"):
        adapt_stage(cfg("adapt.method=distill", "adapt.student=teacher", "adapt.prior=none"), base_model,
                    texts_file, path=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="adapt.student_layers=6, but the teacher .* has 4 layers"):
        adapt_stage(cfg("adapt.method=distill", "adapt.student=teacher", "adapt.prior=none"),
                    transformer_teacher, texts_file, path=tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any work
    args = ["adapt", "--model", str(base_model), "--texts", str(texts_file), "--output", str(tmp_path / "c"),
            "--quiet", "--set", "adapt.method=distill", "--set", "adapt.student=teacher"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is an LSTM" in err[0]


def test_labels_in_the_file_are_ignored(base_model, tmp_path):
    rows = domain_rows()
    flipped = [{**r, "label": 1 - r["label"], "stars": 5} for r in rows]
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"text": r["text"]} for r in rows])
    (tmp_path / "plain.txt").write_text("".join(r["text"] + "\n" for r in rows))
    files = [write_jsonl(tmp_path / "l.jsonl", rows), write_jsonl(tmp_path / "f.jsonl", flipped), plain,
             tmp_path / "plain.txt"]
    outs = [adapt_stage(cfg(), base_model, f, path=tmp_path / f"out{i}", progress=False, scorer=WordScorer())
            for i, f in enumerate(files)]
    assert len({weights(o / "model") for o in outs}) == 1


def test_kill_and_resume_gives_the_uninterrupted_model(base_model, texts_file, tmp_path, monkeypatch):
    config = cfg("adapt.rounds=2")
    full = adapt_stage(config, base_model, texts_file, path=tmp_path / "full", progress=False,
                       scorer=WordScorer())
    real, calls = adapt_module.train_task_model, []

    def killed_in_round_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(adapt_module, "train_task_model", killed_in_round_two)
    with pytest.raises(KeyboardInterrupt):
        adapt_stage(config, base_model, texts_file, path=tmp_path / "resumed", progress=False,
                    scorer=WordScorer())
    assert (tmp_path / "resumed" / "rounds" / "round-1" / "model" / "unigen_tam.json").is_file()
    assert (tmp_path / "resumed" / "lm.json").is_file()
    calls.clear()
    monkeypatch.setattr(adapt_module, "train_task_model", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    out = adapt_stage(config, base_model, texts_file, path=tmp_path / "resumed", progress=False,
                      scorer=WordScorer(fail=True))  # the LM's scores were kept
    assert len(calls) == 1  # round 1 was not trained again
    assert weights(out / "model") == weights(full / "model")


def test_a_model_without_provenance_trains_on_pseudo_labels_alone(base_model, texts_file, tmp_path, capsys):
    bare = TaskModel.from_pretrained(base_model).save_pretrained(tmp_path / "bare", training={"rows": 48})
    out = adapt_stage(cfg("adapt.prior=model_em", "adapt.pseudo_labels=model", "adapt.lm_sample=0"), bare,
                      texts_file, path=tmp_path / "o", progress=False, scorer=WordScorer(fail=True))
    a = json.loads((out / "model" / "unigen_tam.json").read_text())["training"]["adaptation"]
    assert a["rounds"][0]["synthetic_rows"] == 0 and a["labeler"] is None and a["lm_texts"] is None
    assert "synthetic training rows were not found" in capsys.readouterr().err


def test_the_real_tiny_lm_labels_texts(base_model, texts_file, tiny_lm_dir, tmp_path):
    config = cfg("adapt.method=prior", "scoring.backend=transformers", f"adapt.labeler={tiny_lm_dir}")
    out = adapt_stage(config, base_model, texts_file, path=tmp_path / "o", progress=False)
    a = json.loads((out / "model" / "unigen_tam.json").read_text())["training"]["adaptation"]
    assert a["labeler"] == str(tiny_lm_dir) and a["lm_texts"] == 60
    assert len(json.loads((out / "lm.json").read_text())["scores"]) == 60


# ---------------------------------------------------------------- bad inputs, the command line

@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("no_text_column", "no 'text' column"),
    ("utf8", "not valid UTF-8"),
    ("empty", "no texts"),
    ("blank", "no texts"),
    ("few", "adapting needs at least 10"),
])
def test_bad_texts_are_one_line_errors(case, message, base_model, tmp_path, capsys):
    path = {"missing": tmp_path / "nope.jsonl", "no_text_column": tmp_path / "r.csv",
            "utf8": tmp_path / "b.txt", "empty": tmp_path / "e.txt", "blank": tmp_path / "blank.jsonl",
            "few": tmp_path / "few.txt"}[case]
    if case == "no_text_column":
        path.write_text("review,label\ngood,1\nbad,0\n")
    elif case == "utf8":
        path.write_bytes(b"good movie\n\xff\xfe bad\n")
    elif case == "empty":
        path.write_text("")
    elif case == "blank":
        path.write_text('{"text": ""}\n{"text": "  "}\n')
    elif case == "few":
        path.write_text("good\nbad\n")
    code = main(["adapt", "--model", str(base_model), "--texts", str(path), "--output", str(tmp_path / "o"),
                 "--quiet", *(x for s in TINY for x in ("--set", s))])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("unigen: error:")
    with pytest.raises(DataError):
        adapt_stage(cfg(), base_model, path, path=tmp_path / "o2", progress=False, scorer=WordScorer())


def test_a_folder_that_is_not_a_task_model_is_refused(base_model, texts_file, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "missing"):
        code = main(["adapt", "--model", str(bad), "--texts", str(texts_file), "--output",
                     str(tmp_path / "o")])
        assert code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("not a task-model folder" in err or "no such folder" in err)
    damaged = tmp_path / "damaged"
    shutil.copytree(base_model, damaged)
    (damaged / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelNotAvailable):
        adapt_stage(cfg(), damaged, texts_file, path=tmp_path / "o", progress=False, scorer=WordScorer())


def test_the_command_writes_a_model_that_predict_accepts(base_model, texts_file, tmp_path, capsys,
                                                         monkeypatch):
    monkeypatch.setattr(adapt_module, "lm_probs", lambda stage, cfg, texts, *a: (
        np.arange(len(texts)), softmax(-WordScorer().scores(texts), 0.1)))
    args = ["adapt", "--model", str(base_model), "--texts", str(texts_file), "--workdir", str(tmp_path / "w"),
            "--quiet", *(x for s in TINY for x in ("--set", s))]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "labels in the file are never read" in out and "id, label not read" in out
    (stage,) = (tmp_path / "w" / "06_adapt").iterdir()
    assert f"model: {stage / 'model'}" in out
    assert main(args) == 0  # a second run finds the finished stage
    assert main(["predict", "--model", str(stage), "--quiet", "so good , really good"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["label"] in LABELS
    assert main(["status", "--workdir", str(tmp_path / "w")]) == 0
    assert "06_adapt" in capsys.readouterr().out


def test_the_command_distills_a_student_and_says_so(base_model, texts_file, bert_dir, tmp_path, capsys):
    args = ["adapt", "--model", str(base_model), "--texts", str(texts_file), "--output", str(tmp_path / "d"),
            "--quiet", *(x for s in (*TINY, "adapt.method=distill", f"adapt.student={bert_dir}",
                                     "adapt.prior=none", "adapt.epochs=1") for x in ("--set", s))]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "method: distill" in out and f"student: {bert_dir}, trained on 80 of the texts" in out
    assert TaskModel.from_pretrained(tmp_path / "d").spec.architecture != "lstm"


def test_the_command_names_the_teacher_made_student(transformer_teacher, texts_file, tmp_path, capsys):
    args = ["adapt", "--model", str(transformer_teacher), "--texts", str(texts_file), "--output",
            str(tmp_path / "d"), "--quiet",
            *(x for s in (*TINY, "adapt.method=distill", "adapt.student=teacher", "adapt.student_layers=3",
                          "adapt.prior=none", "adapt.epochs=1") for x in ("--set", s))]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "student: the teacher's encoder (" in out
    assert "with 3 of its 4 layers (0, 2, 3), warm-started from its weights, trained on 80 of the texts" \
        in out
    assert TaskModel.from_pretrained(tmp_path / "d").num_layers == 3


def test_the_two_fold_protocol_runs_and_resumes(base_model, tiny_lm_dir, tmp_path, monkeypatch):
    """experiments/adapt_protocol.py on two tiny sets, the tiny LM as labeler: the table, the curve, the plot,
    and a second run that only re-renders (every measurement is kept)."""
    from test_scripts import load_script

    (tmp_path / "data" / "test").mkdir(parents=True)
    for name in ("sst2", "imdb"):
        write_jsonl(tmp_path / "data" / "test" / f"{name}.jsonl", domain_rows(60, seed=len(name)))
    monkeypatch.setenv("UNIGEN_DATA", str(tmp_path / "data"))
    protocol = load_script("adapt_protocol")
    args = [str(base_model), str(tmp_path / "out"), "--sets", "sst2,imdb", "--curve", "imdb:10,20", "--quiet",
            "--report", str(tmp_path / "adapt.md"),
            *(x for s in [*TINY, "scoring.backend=transformers", f"adapt.labeler={tiny_lm_dir}",
                          "adapt.min_texts=5"] for x in ("--set", s))]
    assert protocol.main(args) == 0
    text = (tmp_path / "adapt.md").read_text()
    assert "| sst2 |" in text and "| imdb |" in text and "**mean**" in text and "| 20 |" in text
    assert (tmp_path / "adapt.png").is_file() or "![adapt]" not in text
    records = json.loads((tmp_path / "out" / "records.json").read_text())
    assert records["sst2-AB"]["adapt_texts"] == 30 and records["curve-imdb-10"]["adapt_texts"] == 10
    for f in (tmp_path / "out" / "texts").iterdir():  # the adaptation files hold texts only
        assert all(set(json.loads(line)) == {"text"} for line in f.read_text().splitlines())
    monkeypatch.setattr(protocol, "adapt", lambda *a, **k: pytest.fail("measured again"))
    assert protocol.main(args) == 0
    # every prior's threshold move, from the stages' kept LM scores and saved model probabilities
    rng = np.random.default_rng(0)
    for name in ("sst2", "imdb"):
        np.save(tmp_path / f"p.{name}.npy", rng.dirichlet([1, 1], 60).astype(np.float32))
    priors = load_script("adapt_priors")
    assert priors.main([str(base_model), str(tmp_path / "out"), str(tmp_path / "p"),
                        "--report", str(tmp_path / "priors.md")]) == 0
    table = (tmp_path / "priors.md").read_text()
    assert "| sst2 |" in table and "| imdb |" in table and "oracle" in table and "**mean**" in table


def test_an_adapted_model_has_its_own_evaluation_key(base_model, texts_file, tmp_path):
    from unigen.evaluation.stage import identity_of
    from unigen.stages import Stage

    config = cfg("adapt.method=prior", "adapt.prior=balanced", "adapt.lm_sample=0")
    out = adapt_stage(config, base_model, texts_file, path=tmp_path / "a", progress=False)
    assert identity_of(str(out), config) == identity_of(str(out / "model"), config) == {
        "adapt": Stage.load(out, "adapt").fingerprint}


def test_the_protocol_reads_the_unadapted_accuracy_from_saved_probabilities(tmp_path, monkeypatch):
    """``--unadapted-probs``: full_eval's saved probabilities answer (no model is loaded); a file of the
    wrong length is an error."""
    import argparse

    from test_scripts import load_script

    protocol = load_script("adapt_protocol")
    labels = np.array([0, 1, 1, 0, 1])
    np.save(tmp_path / "p.sst2.npy", np.eye(2)[[0, 1, 0, 0, 1]].astype(np.float32))
    args = argparse.Namespace(out=str(tmp_path / "out"), unadapted_probs=str(tmp_path / "p"), batch_size=8,
                              model="not a model")
    runner = protocol.Runner(args)
    got = runner.unadapted("sst2-AB-unadapted", "sst2", ["t"] * 5, np.array([1, 2, 3]), labels)
    assert got["unadapted"] == pytest.approx(2 / 3) and runner.base is None
    with pytest.raises(SystemExit, match="5 rows, the set has 6"):
        runner.unadapted("sst2-BA-unadapted", "sst2", ["t"] * 6, np.array([0]), np.zeros(6, dtype=int))


@pytest.mark.parametrize("architecture", ["transformer", "lstm"])
def test_the_stage_predicts_under_bf16_autocast_where_native(architecture, base_model, bert_dir, monkeypatch):
    """model_logits autocasts a transformer (never the LSTM) to bf16 only where the device computes it
    natively; the logits stay close to float32's."""
    import torch

    from unigen.adaptation import stage as adapt_module
    from unigen.tam import autocast
    from unigen.tam.model import TaskModel

    if architecture == "lstm":
        model = TaskModel.from_pretrained(base_model)
    else:
        model = TaskModel.build(str(bert_dir), LABELS, max_length=16, projection_dim=16, seed=0)
    texts = [f"text number {i} was good" if i % 2 else f"text {i} was awful" for i in range(12)]
    seen = []
    real = model.logits

    def spy(chunk, **kw):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real(chunk, **kw)

    monkeypatch.setattr(model, "logits", spy)
    got = {}
    for native in (False, True):
        monkeypatch.setattr(autocast, "native_bf16", lambda device, native=native: native)
        got[native] = adapt_module.model_logits(model, texts, 4, False, "x")
    assert seen == [False, architecture == "transformer"]
    assert np.abs(got[True] - got[False]).max() < 0.1
