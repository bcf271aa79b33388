"""Model cards in the Hugging Face format (``README.md`` with YAML front matter).

* :func:`model_card` renders the card of a saved task model from its ``unigen_tam.json`` record: labels,
  base encoder, parameter count, how its training data was made (the ``training["data"]`` record that
  :func:`unigen.stages.training_data_record` collects from the upstream stage manifests), the training
  settings, the
  evaluation table when one is known, intended use and limits. :meth:`TaskModel.save_pretrained` writes
  it; :func:`write_model_card` re-renders it with an evaluation (``unigen run`` does, after stage 5).
* :func:`parse_card` reads a card back as ``{"metadata", "sections"}`` (``GET /model`` of the server).

Pure Python and PyYAML; no torch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from unigen.files import atomic_write_text

__all__ = ["model_card", "parse_card", "write_model_card"]

CARD_NAME = "README.md"
EVALUATION_NAME = "evaluation.json"

#: Hub ids of the embedded encoders (the card's ``base_model``)
BASE_MODELS = {
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
    "mpnet-base": "sentence-transformers/all-mpnet-base-v2",
    "lstm": None,
}
#: Hub ids of the embedded generators
GENERATORS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct", "gemma3-270m": "google/gemma-3-270m"}
SET_NAMES = {"sst2": "SST-2", "imdb": "IMDb", "rotten_tomatoes": "Rotten Tomatoes", "amazon": "Amazon",
             "yelp": "Yelp", "cr": "Customer Reviews", "tweet": "TweetEval sentiment"}

LIMITS = """\
* **Synthetic training data only.** The model never saw a human-labelled example: its labels come from a
  small generative LM's judgement of texts that LM wrote. It inherits that LM's biases and blind spots, and
  its accuracy is below supervised classifiers trained on real labelled data of the target domain.
* **Known weak domains.** In the measured runs (results/main_run.md) the weakest test sets were long movie
  reviews (IMDb: they mix praise and complaint, and are cut at the token limit) and product-feature reviews
  (CR); sarcasm and mixed opinions are hard in general.
* **Two-way sentiment.** Every text gets one of the labels, including neutral or off-topic texts, which
  have no "neutral" answer; the probabilities are not calibrated confidences.
* **English only.** The prompts, the generator and the encoders are English.
* Not for decisions about people (moderation, hiring, credit, health) without human review."""


# ---------------------------------------------------------------- model card

def _pct(x: Any) -> str:
    return "–" if not isinstance(x, (int, float)) or math.isnan(x) else f"{100 * x:.1f}"


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _front_matter(record: Mapping[str, Any], evaluation: Mapping[str, Any] | None, name: str) -> str:
    meta: dict[str, Any] = {"language": ["en"], "library_name": "unigen",
                            "pipeline_tag": "text-classification",
                            "tags": ["sentiment-analysis", "synthetic-data", "unigen", "zero-shot"]}
    base = BASE_MODELS.get(record.get("encoder", ""), record.get("encoder"))
    local = base is not None and (Path(str(base)).is_absolute() or Path(str(base)).exists())
    if record.get("architecture") == "transformer" and base and not local:  # a Hub id, not a folder
        meta["base_model"] = base
    meta["metrics"] = ["accuracy", "f1"]
    sets = [k for k in (evaluation or {}) if k != "average" and isinstance(evaluation[k], Mapping)]
    if sets:
        results = [{"task": {"type": "text-classification", "name": "Sentiment classification"},
                    "dataset": {"name": SET_NAMES.get(s, s), "type": s, "split": "test"},
                    "metrics": [{"type": "accuracy", "value": round(float(evaluation[s]["accuracy"]), 4)},
                                {"type": "f1", "name": "macro F1",
                                 "value": round(float(evaluation[s]["macro_f1"]), 4)}]}
                   for s in sets if "accuracy" in evaluation[s]]
        meta["model-index"] = [{"name": name, "results": results}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def length_classes(data: Mapping[str, Any]) -> str:
    """`` in the length classes `sentence`, `short`, `long` `` for rows made with ``generate.lengths``."""
    names = data.get("lengths") or []
    return " in the length classes " + ", ".join(f"`{n}`" for n in names) if names else ""


def _data_section(training: Mapping[str, Any]) -> str:
    data = training.get("data") or {}
    rows = training.get("rows")
    if not data:
        source = training.get("source")
        where = f" from `{source}`" if source else ""
        return (f"Trained on {rows if rows is not None else 'an unknown number of'} rows{where}. Their "
                "provenance was not recorded with the model.")
    gen = data.get("generator")
    gen_text = f"`{gen}`" + (f" ({GENERATORS[gen]})" if gen in GENERATORS else "")
    parts = [f"Every training text was written by the generative LM {gen_text} from the prompt set "
             f"`{data.get('prompt_set')}`{length_classes(data)} (seed {data.get('seed')}) and labelled by "
             "the same LM; no human-labelled text was used."]
    rel = data.get("relabel") or {}
    if rel:
        centred = " with each label's scores centred on the sample" if rel.get("centred") else ""
        chosen = {"auto": "chosen automatically", "config": "set in the configuration"}.get(
            rel.get("chosen"), rel.get("chosen") or "set in the configuration")
        parts.append(f"Labels: relabel rule `{rel.get('rule')}`{centred} ({chosen}), "
                     f"{rel.get('mode')} labels at temperature {rel.get('temperature')}, threshold "
                     f"{rel.get('threshold')}.")
    table = [["generated (texts written)", data.get("generated", "–")],
             ["kept after relabelling", data.get("kept", "–")]]
    weighting = data.get("weighting") or {}
    if weighting:
        table.append(["selected by sample weighting" + ("" if weighting.get("enabled") else " (off)"),
                      weighting.get("selected", "–")])
    table.append(["training rows", rows if rows is not None else "–"])
    per_label = data.get("kept_per_label") or {}
    text = " ".join(parts) + "\n\n" + markdown_table(["step", "rows"], [[a, b] for a, b in table])
    if per_label:
        text += "\n\nKept rows per label: " + ", ".join(f"{k} {v}" for k, v in per_label.items()) + "."
    if rel.get("agreement_with_prompt_labels") is not None:
        text += (f" The relabelled label agrees with the label the text was prompted for on "
                 f"{_pct(rel['agreement_with_prompt_labels'])}% of the texts.")
    return text


SETTING_KEYS = ("epochs", "lr", "batch_size", "max_length", "targets", "scl_weight", "scl_temperature",
                "denoise_bank", "bank_size", "bank_threshold", "momentum", "pooling", "warmup", "schedule",
                "min_steps", "average_from", "valid_fraction")


def _training_section(training: Mapping[str, Any]) -> str:
    settings = training.get("settings") or {}
    names = {"max_length": "max_length (training; predictions use the token limit above)"}
    rows = [[names.get(k, k), f"`{settings[k]}`"] for k in SETTING_KEYS if k in settings]
    averaged = bool(training.get("averaged"))
    chosen = (("best_epoch", "weights averaged up to epoch"), ("best_valid_acc", "accuracy of the averaged "
              "weights on the held-out synthetic rows")) if averaged else (
        ("best_epoch", "best epoch"), ("best_valid_acc", "best accuracy on the held-out synthetic rows"))
    for key, label in (("seed", "seed"), ("epochs", "epochs run"), *chosen):
        if training.get(key) is not None:
            value = training[key]
            rows.append([label, f"{_pct(value)}%" if key == "best_valid_acc" else f"`{value}`"])
    if not rows:
        return "No training record was saved with this model."
    return ("Cross-entropy on the soft labels plus a supervised contrastive loss with a denoising memory "
            "bank (UniGen).\n\n" + markdown_table(["setting", "value"], rows))


ADAPT_SETTING_KEYS = ("method", "prior", "pseudo_labels", "select_fraction", "max_pseudo", "rounds",
                      "epochs", "lr", "synthetic_ratio", "targets", "scl_weight", "max_length", "match_prior",
                      "lm_sample", "student", "student_layers", "max_distill")


def student_name(student: Mapping[str, Any], *, markdown: bool = True) -> str:
    """How a distilled student is named: its encoder, or for ``adapt.student=teacher`` "the teacher's encoder
    (`mpnet-base`) with 6 of its 12 layers (0, 2, 4, 7, 9, 11), warm-started from its weights"."""
    q = "`" if markdown else ""
    encoder = f"{q}{student.get('encoder')}{q}"
    if not student.get("from_teacher"):
        return encoder
    kept = ", ".join(str(i) for i in student.get("kept_layers") or ())
    return (f"the teacher's encoder ({encoder}) with {student.get('student_layers')} of its "
            f"{student.get('teacher_layers')} layers" + (f" ({kept})" if kept else "")
            + ", warm-started from its weights")


def _shares(shares: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k} {_pct(v)}%" for k, v in (shares or {}).items()) or "–"


def _adaptation_section(adaptation: Mapping[str, Any]) -> str:
    """``unigen adapt``'s record: the unlabeled texts (file, rows, sha256), the method and its effect."""
    data = adaptation.get("data") or {}
    settings = adaptation.get("settings") or {}
    rounds = adaptation.get("rounds") or []
    text = (f"Adapted by `unigen adapt` to **{data.get('rows', '–')} unlabeled texts** of the file "
            f"`{data.get('file')}` (sha256 `{data.get('sha256')}`, column `{data.get('text_field')}`). "
            "No label of that file was read: only its text column"
            + (f"; the columns {', '.join(f'`{c}`' for c in data['unread_columns'])} were not read"
               if data.get("unread_columns") else "") + ".\n\n")
    resolved = {"prior": adaptation.get("prior_estimator")}  # None in the settings: the method's default
    table = [[k, f"`{resolved.get(k) or settings[k]}`"] for k in ADAPT_SETTING_KEYS if k in settings]
    if adaptation.get("labeler"):
        table.append(["labeler (calibrated verbalizer)", f"`{adaptation['labeler']}` on "
                      f"{adaptation.get('lm_texts')} texts"])
    table += [["estimated class prior", _shares(adaptation.get("prior"))],
              ["predicted share before", _shares(adaptation.get("predicted_share_before"))],
              ["predicted share after", _shares(adaptation.get("predicted_share_after"))],
              ["logit offset (in the classifier bias)", f"`{adaptation.get('logit_offset')}`"]]
    for r in rounds:
        table.append([f"round {r.get('round')}", f"{r.get('pseudo_labelled')} pseudo-labelled texts "
                      f"({', '.join(f'{k} {v}' for k, v in (r.get('pseudo_per_label') or {}).items())}) + "
                      f"{r.get('synthetic_rows')} synthetic rows"])
    if (student := adaptation.get("student")):
        table.append(["distilled student", f"{student_name(student)}, trained on "
                      f"{student.get('distilled_texts')} of the texts with the teacher's probabilities + "
                      f"{student.get('synthetic_rows')} synthetic rows (teacher: "
                      f"`{adaptation.get('adapted_from')}`)"])
    return text + markdown_table(["setting", "value"], table)


def _evaluation_section(evaluation: Mapping[str, Any] | None) -> str:
    if not evaluation:
        return ("Not evaluated yet: `unigen evaluate --model THIS_FOLDER` measures accuracy and macro-F1 on "
                "the seven real test sets (`unigen run` adds the table to this card).")
    sets = [k for k in evaluation if k != "average" and isinstance(evaluation[k], Mapping)]
    rows = [[SET_NAMES.get(s, s), evaluation[s].get("n", "–"), _pct(evaluation[s].get("accuracy")),
             _pct(evaluation[s].get("macro_f1"))] for s in sets]
    if "average" in evaluation:
        rows.append(["**mean**", "", f"**{_pct(evaluation['average'])}**", ""])
    return ("Real, human-labelled test sets the model never trained on (zero-shot); accuracy and macro-F1 "
            "in %.\n\n" + markdown_table(["test set", "n", "accuracy", "macro-F1"], rows))


def _weakest(evaluation: Mapping[str, Any] | None) -> str:
    """A limits line naming the two test sets this model did worst on, when it was evaluated."""
    sets = sorted((float(v["accuracy"]), k) for k, v in (evaluation or {}).items()
                  if k != "average" and isinstance(v, Mapping) and "accuracy" in v)
    if len(sets) < 2:
        return ""
    worst = ", ".join(f"{SET_NAMES.get(k, k)} ({_pct(a)}%)" for a, k in sets[:2])
    return f"\n* **Weakest in its evaluation**: {worst}."


def model_card(record: Mapping[str, Any], *, parameters: int | None = None,
               evaluation: Mapping[str, Any] | None = None, name: str = "unigen-sentiment") -> str:
    """The ``README.md`` of a task model from its ``unigen_tam.json`` record (and an evaluation
    ``{set: {"accuracy", "macro_f1", "n"}, "average"}``)."""
    training = record.get("training") or {}
    labels = list(record.get("labels", []))
    arch = record.get("architecture")
    encoder = record.get("encoder")
    if arch == "lstm":
        model_text = (f"A 1-layer BiLSTM (hidden size {record.get('hidden_size')} per direction) over "
                      f"{record.get('embed_dim')}-dimensional word embeddings initialised from GloVe-6B-50d, "
                      f"vocabulary of {record.get('vocab_size')} words from the training texts")
    else:
        base = BASE_MODELS.get(encoder) or encoder
        model_text = (f"The encoder `{base}` fine-tuned, sentence vector by {record.get('pooling')} pooling "
                      "of its last hidden states")
    params = f"{parameters:,}" if parameters is not None else "–"
    summary = (f"A {len(labels)}-way sentiment classifier ({', '.join(labels)}) trained by "
               "UniGen (Choi et al., EMNLP 2024) **only on synthetic data**: texts "
               "written and labelled by a small generative language model.")
    body = [
        f"# {name}", summary,
        "## Labels\n\n" + markdown_table(["id", "label"], [[i, f"`{lab}`"] for i, lab in enumerate(labels)]),
        "## Model\n\n" + f"{model_text}, then a projection head (Linear, tanh, LayerNorm; "
        f"{record.get('projection_dim')} features) and a linear classifier.\n\n"
        + markdown_table(["property", "value"], [["architecture", f"`{arch}`"],
                                                  ["base encoder", f"`{encoder}`"],
                            ["parameters", params], ["token limit", record.get("max_length")],
                            ["weights", "`model.safetensors` (no pickle; sha256 in `unigen_tam.json`)"],
                            ["unigen version", record.get("unigen_version", "–")]]),
        "## Training data\n\n" + _data_section(training),
        "## Training\n\n" + _training_section(training),
        *(["## Adaptation\n\n" + _adaptation_section(training["adaptation"])] if training.get("adaptation")
          else []),
        "## Evaluation\n\n" + _evaluation_section(evaluation),
        "## Intended use\n\nSentence- and review-level positive/negative sentiment of English text where no "
        "labelled training data exists: product and movie reviews, restaurant and service feedback, "
        "opinions in short posts. A baseline to compare with, or to bootstrap labelling, before real data "
        "is collected.",
        "## Limitations\n\n" + LIMITS + _weakest(evaluation),
        "## Input length\n\n" + f"Texts longer than the token limit ({record.get('max_length')} tokens) are "
        "**truncated, not rejected**: only their first tokens are read and the rest is ignored, so the label "
        "of a long text reflects its beginning.",
        "## How to use\n\n```python\nfrom unigen import TaskModel\n\nmodel = TaskModel.from_pretrained("
        "\"THIS_FOLDER\")\nmodel.predict([\"What a lovely film.\", \"Never again.\"])\n"
        "model.predict_proba(\"What a lovely film.\")\n```\n\n"
        "```bash\nunigen predict --model THIS_FOLDER \"What a lovely film.\"\n"
        "unigen serve THIS_FOLDER                     # HTTP API and a web page on http://127.0.0.1:8000\n"
        "unigen export THIS_FOLDER --format onnx --output onnx/ --quantize int8   # no PyTorch needed\n```",
    ]
    return _front_matter(record, evaluation, name) + "\n" + "\n\n".join(body) + "\n"


def write_model_card(folder: str | Path, *, evaluation: Mapping[str, Any] | None = None,
                     parameters: int | None = None) -> Path:
    """(Re)write ``folder/README.md`` from ``unigen_tam.json``; an ``evaluation`` is also kept in
    ``evaluation.json`` (and an earlier one is reused when none is given)."""
    folder = Path(folder)
    record = json.loads((folder / "unigen_tam.json").read_text(encoding="utf-8"))
    if evaluation is not None:
        atomic_write_text(folder / EVALUATION_NAME, json.dumps(dict(evaluation), indent=1))
    elif (folder / EVALUATION_NAME).is_file():
        evaluation = json.loads((folder / EVALUATION_NAME).read_text(encoding="utf-8"))
    if parameters is None:
        parameters = record.get("parameters")
    card = model_card(record, parameters=parameters, evaluation=evaluation)
    atomic_write_text(folder / CARD_NAME, card)
    return folder / CARD_NAME


# ---------------------------------------------------------------- reading a card back

def parse_card(text: str) -> dict[str, Any]:
    """``{"metadata": front matter, "title", "sections": {heading: markdown}}`` of a card."""
    metadata: dict[str, Any] = {}
    match = re.match(r"^---\n(.*?)\n---\n", text, flags=re.S)
    if match:
        metadata = yaml.safe_load(match.group(1)) or {}
        text = text[match.end():]
    title, sections, current = "", {}, None
    for line in text.splitlines():
        if line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {"metadata": metadata, "title": title,
            "sections": {k: "\n".join(v).strip() for k, v in sections.items()}}
