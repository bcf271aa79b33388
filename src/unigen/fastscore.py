"""A faster :class:`unigen.lm.LMScorer` for the relabel stage (same scores, less work).

* Verbalizer rule: only the next-token distribution at the last real position is needed, so instead
  of the full ``(B, T, V)`` logits this scorer runs the base transformer, gathers each row's last
  hidden state and applies the output head to those ``B`` vectors (``V`` = 49k for SmolLM2, so the
  head is a large share of the work).
* Nll rule: the ``N * K`` filled templates are length-bucketed all together (the base class sorts
  within chunks of ``8 * batch_size``), so batches carry less padding.

Scores equal :class:`LMScorer`'s up to float rounding (checked in the tests and the benchmark).
"""

from __future__ import annotations

import numpy as np
import torch

from unigen.lm import LMScorer, _progress


class FastLMScorer(LMScorer):
    """:class:`LMScorer` with a last-position-only output head for the verbalizer rule."""

    def _last_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        base = self.model.base_model
        hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
        last = mask.sum(1) - 1
        h = hidden[torch.arange(len(ids), device=ids.device), last]
        logits = self.model.get_output_embeddings()(h).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def _nll_scores(self, texts: list[str], template: str, progress: bool) -> np.ndarray:
        n, k = len(texts), len(self.labels)
        seqs = self._encode([template.format(label=lab, text=t) for t in texts for lab in self.labels])
        out = np.zeros(n * k)
        with _progress(n, "scoring (nll)", progress) as bar:
            for batch in self._batches(seqs):
                out[batch] = self.sequence_nll([seqs[i] for i in batch])
                bar.update(len(batch) / k)
        return out.reshape(n, k)

