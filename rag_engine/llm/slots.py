"""The batched backend's sequence ids: who holds which, their sampler chains, and their KV cells.

With one KV stream per sequence (`kv_unified=False`) llama.cpp runs one micro-batch per run of consecutive sequence
ids, so ids are kept contiguous: when a request ends, the highest active sequence moves into its id (`_compact`).
A finished or cancelled sequence leaves the KV cache with `llama_memory_seq_rm` and its id is reused.
"""

from __future__ import annotations

import logging
from typing import Any

from rag_engine.llm.batch_sequence import BatchSequence
from rag_engine.llm.sampling import Sampling, SequenceSampler, free_chain, make_graph_chain
from rag_engine.llm.scheduling import compaction_moves

logger = logging.getLogger(__name__)


class Slots:
    """`parallel` sequence ids over one context. Used by the model thread only."""

    def __init__(self, ctx: Any, vocab: Any, parallel: int, *, kv_unified: bool, sampling: Sampling) -> None:
        import llama_cpp

        self.ctx = ctx
        self.vocab = vocab  # llama_vocab *, for grammar samplers
        self.sampling = sampling
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.parallel = parallel
        self.kv_unified = kv_unified
        self.active: list[BatchSequence] = []
        self.free_ids: list[int] = list(range(parallel))

    def admit(self, seq: BatchSequence) -> None:
        """Give `seq` the lowest free id and its chains. When llama.cpp refuses a graph-side chain, every sequence
        samples wholly on the host from then on (`sampling` becomes `cpu`). A sequence with a grammar gets a top-k cut
        in the graph and its chain and grammar on the host (`sampling.make_graph_chain`)."""
        seq.seq_id = self.free_ids.pop(0)
        seq.sampler = SequenceSampler(seq.request, self.vocab)
        self.active.append(seq)
        if self.sampling != "cpu" and not self._bind_graph_chain(seq):
            logger.warning("this llama.cpp cannot sample on its backend; sampling on the CPU")
            self.sampling = "cpu"

    def release(self, seq: BatchSequence) -> None:
        """Free the sequence's KV cells, chains and id."""
        import llama_cpp

        if seq in self.active:
            self.active.remove(seq)
        self._unbind_graph_chain(seq)
        if seq.sampler is not None:
            seq.sampler.free()
            seq.sampler = None
        if seq.seq_id >= 0:
            llama_cpp.llama_memory_seq_rm(self.mem, seq.seq_id, -1, -1)
            self.free_ids.append(seq.seq_id)
            seq.seq_id = -1
            if not self.kv_unified:
                self._compact()
            self.free_ids.sort()

    def _compact(self) -> None:
        """The highest active sequence's KV stream is copied into the lowest free id, on the device at the next
        decode (tens of microseconds); see `scheduling.compaction_moves`."""
        import llama_cpp

        for seq, new in compaction_moves(self.active, self.free_ids):
            old = seq.seq_id
            llama_cpp.llama_memory_seq_cp(self.mem, old, new, -1, -1)
            llama_cpp.llama_memory_seq_rm(self.mem, old, -1, -1)
            graph_chain = seq.backend_sampler is not None
            self._unbind_graph_chain(seq)
            seq.seq_id = new
            if graph_chain:
                self._bind_graph_chain(seq)

    def _bind_graph_chain(self, seq: BatchSequence) -> bool:
        """Give the sequence's id its graph-side chain: a chain is bound to its sequence's graph buffers once, so a
        sequence that moves id gets a new one (top-k has no state; a whole chain on the backend restarts its random
        stream)."""
        import llama_cpp

        seq.backend_sampler = make_graph_chain(seq.request, self.sampling)
        if llama_cpp.llama_set_sampler(self.ctx, seq.seq_id, seq.backend_sampler):
            return True
        free_chain(seq.backend_sampler)
        seq.backend_sampler = None
        return False

    def _unbind_graph_chain(self, seq: BatchSequence) -> None:
        import llama_cpp

        if seq.backend_sampler is not None:
            llama_cpp.llama_set_sampler(self.ctx, seq.seq_id, None)
            free_chain(seq.backend_sampler)
            seq.backend_sampler = None
