"""What the batched backend decodes in each step, and where each token of that step goes in the `llama_batch`.

Prompts go first: while one is being read, generating sequences sit out for at most `max_decode_stall_s`, so
questions that arrive together decode together, in full batches, to the end. Decoding sequences come first in a
batch, in seq-id order, each its last token then its draft if it has one (speculative decoding; logits on all of
them), then prompt chunks, oldest request first, up to `prefill_chunk` tokens (logits only on a prompt's last token).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rag_engine.llm.batch_sequence import BatchSequence


@dataclass
class StepTimings:
    """Where the model thread's time goes, summed over steps (seconds); for benchmarks, cheap enough to keep on."""

    steps: int = 0
    build: float = 0.0  # filling the llama_batch
    decode: float = 0.0  # the llama_decode call (graph build + launch; on a GPU it returns before the work ends)
    wait: float = 0.0  # llama_synchronize: waiting for the device to finish the step
    sample: float = 0.0  # all sequences' sampler chains
    deliver: float = 0.0  # detokenizing, stop strings, queueing deltas
    between: float = 0.0  # admitting, reaping, handing deltas to the event loop
    drafted: int = 0  # prompt-lookup draft tokens decoded (speculative decoding)
    accepted: int = 0  # of those, the ones the sampler agreed with: tokens gained without a step of their own
    sampled: int = 0  # tokens picked by a sampler chain (not written by a grammar's closing text)
    refused: int = 0  # of those, picks a grammar refused and that were picked again (SequenceSampler)

    def per_step_ms(self) -> dict[str, float]:
        n = max(1, self.steps)
        phases = ("build", "decode", "wait", "sample", "deliver", "between")
        return {name: 1e3 * getattr(self, name) / n for name in phases}

    @property
    def acceptance(self) -> float | None:
        """Accepted / drafted tokens, None before any draft."""
        return self.accepted / self.drafted if self.drafted else None


class PromptsFirst:
    """Chooses the generating sequences that take a step now, in seq-id order: none while prompts wait to be read.

    Prompts are read first: sequences that start together then decode together to the end, in full batches (a
    burst of 8 questions finishes as soon as llama-batched-bench's 8 sequences). Generating streams wait at most
    `max_decode_stall_s` for that (plus one prompt chunk), then a step carries both.
    """

    def __init__(self, max_decode_stall_s: float) -> None:
        self.max_decode_stall_s = max_decode_stall_s
        self._held_since: float | None = None  # when decoding sequences were last held back for prompt reading

    def decoding(self, active: Sequence[BatchSequence], now: float) -> list[BatchSequence]:
        decoding = sorted((s for s in active if not s.prefilling), key=lambda s: s.seq_id)
        if not decoding or len(decoding) == len(active):
            self._held_since = None
            return decoding
        if self._held_since is None:
            self._held_since = now
        if now - self._held_since < self.max_decode_stall_s:
            return []
        self._held_since = None
        return decoding


def fill_batch(
    batch: Any, decoding: Sequence[BatchSequence], active: Sequence[BatchSequence], budget: int
) -> list[tuple[BatchSequence, int]]:
    """Write this step's tokens into `batch` (prompt tokens up to `budget`); returns the prompts read in it with
    the tokens each takes.

    Sets each sequence's `i_batch` to its (first) output row (-1 when the step gives it none); a decoding
    sequence's draft follows its last token, one output row each.
    """
    n = 0
    for seq in decoding:
        seq.i_batch = n
        for j, token in enumerate((seq.last_token, *seq.draft)):
            batch.token[n] = token
            batch.pos[n] = seq.n_past + j
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.seq_id
            batch.logits[n] = 1
            n += 1
    reading: list[tuple[BatchSequence, int]] = []
    for seq in active:
        if budget <= 0:
            break
        if not seq.prefilling:
            continue
        take = min(len(seq.prompt) - seq.n_read, budget)
        start = seq.n_read
        for j in range(take):
            batch.token[n] = seq.prompt[start + j]
            batch.pos[n] = start + j
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.seq_id
            batch.logits[n] = 0
            n += 1
        finishes = start + take == len(seq.prompt)
        if finishes:
            batch.logits[n - 1] = 1
        seq.i_batch = n - 1 if finishes else -1
        reading.append((seq, take))
        budget -= take
    batch.n_tokens = n
    return reading


def compaction_moves(active: Sequence[BatchSequence], free_ids: list[int]) -> Iterator[tuple[BatchSequence, int]]:
    """Moves `(sequence, new id)` that keep the active ids contiguous from 0 (per-sequence KV only).

    With one KV stream per sequence llama.cpp cuts a batch into one micro-batch (one more graph run) per run of
    consecutive ids, so a finished request in the middle would slow every later step. The highest active sequence
    moves into the lowest free id instead. The caller moves the KV stream and sets `seq_id`; `free_ids` is updated.
    """
    while active and free_ids:
        low = min(free_ids)
        top = max(active, key=lambda s: s.seq_id)
        if top.seq_id < low:
            return
        old = top.seq_id
        yield top, low
        free_ids.remove(low)
        free_ids.append(old)
