"""``unigen export-data``: the final training rows of a run as a Parquet data set with a dataset card.

The rows are the ones the train stage reads: the weight stage's rows with ``keep`` true (SunGen's top-K
selection), validated by :func:`unigen.tam.training_data.parse_rows`. The source may be

* a pipeline work folder (``unigen run --workdir W``): the weight stage its ``run.json`` names, else its
  only weight stage folder;
* a train stage folder (``W/04_train/<fp>``): the weight stage upstream of it;
* a weight or relabel stage folder.

Written::

    DIR/train.parquet   text, label, label_name, probs (list of float), and prompt_label, weight, id
                        when the rows have them
    DIR/README.md       the dataset card (Hugging Face format): columns, labels, how the rows were made

``datasets.load_dataset("parquet", data_files="DIR/train.parquet", split="train")`` reads it, as does
``pyarrow.parquet.read_table``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from unigen.errors import DataError, StageError
from unigen.export.dataset_card import dataset_card
from unigen.stages import MANIFEST, STAGES, Stage, training_data_record, upstream_manifests
from unigen.tam.training_data import parse_rows

__all__ = ["PARQUET_NAME", "export_training_data", "find_rows_stage"]

PARQUET_NAME = "train.parquet"


def _single_weight_stage(workdir: Path) -> Path:
    run = workdir / "run.json"
    if run.is_file():
        named = json.loads(run.read_text(encoding="utf-8")).get("stages", {}).get("weight")
        if named and (Path(named) / MANIFEST).is_file():
            return Path(named)
    folders = sorted(p.parent for p in (workdir / STAGES["weight"].folder).glob(f"*/{MANIFEST}"))
    if len(folders) == 1:
        return folders[0]
    if not folders:
        raise StageError(f"{workdir}: no weight stage folder ({STAGES['weight'].folder}/<fingerprint>); give "
                         "a work folder of `unigen run`, or a train, weight or relabel stage folder")
    raise StageError(f"{workdir} holds {len(folders)} weight stage folders; give one of them (or a train "
                     f"stage folder): {', '.join(str(f) for f in folders)}")


def find_rows_stage(source: str | Path) -> Path:
    """The stage folder whose kept rows are the training rows of ``source`` (see the module docstring)."""
    source = Path(source)
    if not source.is_dir():
        raise StageError(f"{source}: no such folder (expected a work folder or a stage folder)")
    if not (source / MANIFEST).is_file():
        return _single_weight_stage(source)
    stage = Stage.load(source)
    name = stage.manifest.get("stage")
    if name in ("weight", "relabel"):
        return source
    if name == "train":
        upstream = stage.manifest.get("upstream", {})
        if "weight" in upstream:
            weight = source.resolve().parent.parent / STAGES["weight"].folder / upstream["weight"]
            if (weight / MANIFEST).is_file():
                return weight
            raise StageError(f"{source}: its weight stage {upstream['weight']} is not in the same work "
                             "folder")
        raise StageError(f"{source} was trained on a JSONL file ({stage.manifest.get('data')}), which "
                         "already holds its rows")
    raise StageError(f"{source} holds stage {name!r}; give a work folder or a train, weight or relabel "
                     "stage folder")


def _labels(manifests: dict[str, dict[str, Any]]) -> list[str]:
    for m in manifests.values():
        labels = m.get("config", {}).get("labels")
        if labels:
            return list(labels)
    raise StageError("no labels found in the stage manifests")


def export_training_data(source: str | Path, output: str | Path) -> Path:
    """Write ``train.parquet`` and ``README.md`` into ``output``; returns the folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from unigen.files import atomic_write, atomic_write_text

    folder = find_rows_stage(source)
    manifests = upstream_manifests(folder)
    labels = _labels(manifests)
    rows = list(Stage.load(folder).iter_rows())
    data = parse_rows(rows, len(labels), source=str(folder))  # the train stage's validation and selection
    kept = [r for r in rows if r.get("keep", True)]
    if len(kept) != len(data):  # pragma: no cover (parse_rows keeps exactly these)
        raise DataError(f"{folder}: {len(kept)} kept rows but {len(data)} training rows")
    ids = data.hard_labels().tolist()
    columns: dict[str, Any] = {
        "text": pa.array(data.texts, pa.string()),
        "label": pa.array(ids, pa.int64()),
        "label_name": pa.array([labels[i] for i in ids], pa.string()),
        "probs": pa.array(data.targets.tolist(), pa.list_(pa.float32())),
    }
    if all("prompt_label" in r for r in kept):
        columns["prompt_label"] = pa.array([int(r["prompt_label"]) for r in kept], pa.int64())
    if data.weights is not None:
        columns["weight"] = pa.array(data.weights.tolist(), pa.float32())
    if all("id" in r for r in kept):
        columns["id"] = pa.array([str(r["id"]) for r in kept], pa.string())
    table = pa.table(columns)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write(output / PARQUET_NAME, lambda f: pq.write_table(table, f))
    dtypes = {"text": "string", "label": "int64", "label_name": "string", "probs": "list<float32>",
              "prompt_label": "int64", "weight": "float32", "id": "string"}
    per_label = Counter(labels[i] for i in ids)
    card = dataset_card(training_data_record(folder), rows=len(data), labels=labels, per_label=per_label,
                        columns={k: dtypes[k] for k in columns})
    atomic_write_text(output / "README.md", card)
    return output
