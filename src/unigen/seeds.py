"""Every seed of a run is derived from the run seed (``seed`` in the config), never drawn at random.

Two schemes, each written once:

* :func:`derive_seed` hashes JSON parts with sha256: ``derive_seed(run_seed, "generate", shard)`` seeds a
  generation shard, ``derive_seed(shard_seed, attempt)`` one sampled row, ``derive_seed(seed, "datacard")``
  the data card's examples. Stable across machines and Python versions (never the salted ``hash``).
* :func:`epoch_seed` feeds ``(seed, epoch, stream)`` to numpy's ``SeedSequence``: one seed per epoch and
  random stream of the SunGen weighting (inner shuffle, validation subset, dropout) and of task-model
  training (shuffle, dropout), so a run resumed after epoch ``e`` draws exactly what an uninterrupted one
  draws. :func:`split_rng` seeds the synthetic validation split of task-model training.

The values are part of the on-disk contract: stage folders cached and runs resumed before a change must
draw the same numbers after it (``tests/test_golden.py`` pins them).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

_U64 = 2**64
_U63_MASK = (1 << 63) - 1
VALID_SPLIT_STREAM = 0x7A11  # the stream id of the train/validation split


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from JSON-serialisable parts (never Python's salted ``hash``).

    ``derive_seed(run_seed, "generate", shard_index)`` is the same on every machine and run.
    """
    blob = json.dumps(list(parts), sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") & _U63_MASK


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed for random ``stream`` of ``epoch`` (``seed`` is taken modulo 2**64)."""
    state = np.random.SeedSequence([seed % _U64, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & _U63_MASK


def split_rng(seed: int) -> np.random.Generator:
    """The generator of the seeded train/validation split."""
    return np.random.default_rng([seed % _U64, VALID_SPLIT_STREAM])
