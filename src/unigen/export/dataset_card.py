"""The dataset card of the exported training rows (:mod:`unigen.export.parquet`), in the Hugging Face format
(``README.md`` with YAML front matter). Pure Python and PyYAML; no torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from unigen.tam.model_card import GENERATORS, length_classes, markdown_table


def dataset_card(data: Mapping[str, Any], *, rows: int, labels: list[str], per_label: Mapping[str, int],
                 columns: Mapping[str, str], name: str = "unigen-synthetic-sentiment") -> str:
    """The ``README.md`` of exported training rows: what each column means and how the rows were made
    (``data``: a :func:`unigen.stages.training_data_record`)."""
    size = ("n<1K" if rows < 1_000 else "1K<n<10K" if rows < 10_000 else "10K<n<100K" if rows < 100_000
            else "100K<n<1M")
    meta = {"language": ["en"], "license": "other", "task_categories": ["text-classification"],
            "task_ids": ["sentiment-classification"], "tags": ["synthetic", "unigen", "sentiment"],
            "size_categories": [size], "pretty_name": name,
            "configs": [{"config_name": "default",
                         "data_files": [{"split": "train", "path": "train.parquet"}]}]}
    gen = data.get("generator")
    how = (f"written by the generative LM `{gen}`" + (f" ({GENERATORS[gen]})" if gen in GENERATORS else "")
           + f" from the prompt set `{data.get('prompt_set')}`{length_classes(data)} and labelled by the "
           "same LM") if gen else \
        "made by the UniGen pipeline (provenance not found beside the rows)"
    rel = data.get("relabel") or {}
    steps = markdown_table(["step", "rows"], [["generated", data.get("generated", "–")],
                                      ["kept after relabelling", data.get("kept", "–")],
                                      ["in this data set", rows]])
    body = [
        f"# {name}",
        f"{rows} synthetic English sentences for {len(labels)}-way sentiment classification "
        f"({', '.join(labels)}), {how}. These are the final training rows of a UniGen task model: no text "
        "was written or labelled by a person.",
        "## Loading\n\n```python\nfrom datasets import load_dataset\n\n"
        "rows = load_dataset(\"parquet\", data_files=\"THIS_FOLDER/train.parquet\", split=\"train\")\n```",
        "## Columns\n\n" + markdown_table(["column", "type", "meaning"], [[k, v, COLUMN_MEANINGS.get(k, "")]
                                                                for k, v in columns.items()]),
        "## Labels\n\n" + markdown_table(["id", "label", "rows"], [[i, lab, per_label.get(lab, 0)]
                                                          for i, lab in enumerate(labels)]),
        "## How the rows were made\n\n" + steps
        + (f"\n\nRelabel rule `{rel.get('rule')}`" + (" (scores centred)" if rel.get("centred") else "")
           + f", {rel.get('mode')} labels at temperature {rel.get('temperature')}; seed {data.get('seed')}."
           if rel else "")
        + ("\n\nStage fingerprints: " + ", ".join(f"{k} `{v}`" for k, v in data.get("stages", {}).items())
           if data.get("stages") else ""),
        "## Limitations\n\nMachine-written and machine-labelled: the texts are short, repetitive in style "
        "and "
        "carry the generator's biases; some labels are wrong (the soft label `probs` says how sure the "
        "labeller was). Use them to train or probe classifiers, not as ground truth.",
    ]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + "\n\n".join(body) + "\n"


COLUMN_MEANINGS = {
    "text": "the synthetic text",
    "label": "the training label (argmax of `probs`), a class id",
    "label_name": "the training label's name",
    "probs": "the soft label: the labeller's probability of each class, in label order",
    "prompt_label": "the label the generator was prompted to write",
    "weight": "SunGen sample weight (higher: more likely correct); gates the memory bank in training",
    "id": "row id (shard and attempt) in the pipeline's stage folders",
}
