"""Prompt-lookup drafts for speculative decoding in the batched backend.

Answers quote their sources, so the tokens that follow the reply's last few tokens are often in the prompt already.
`PromptLookup` proposes them: the reply's last `n` tokens (3, then 2) are looked up in the prompt and the reply so
far, and the tokens that followed their latest earlier occurrence are the draft. The backend decodes the draft with
the sequence's last token in the same step and keeps the longest prefix its sampler agrees with
(`BatchedLlamaBackend._verify`); a draft costs compute, never a different reply (up to float rounding: a step's logits
shift in the last bits with the batch's shape, as they already do with which requests decode together).

Measured on a 2-core CPU with Qwen2.5-Coder-0.5B over real prompts: bench/bench_speculative.py, bench/README.md.

>>> lookup = PromptLookup()
>>> lookup.extend([5, 6, 7, 8, 9, 1, 2, 5, 6])   # a prompt that mentions 5 6 7 8 9, then a reply that quotes it
>>> lookup.draft(3)
[7, 8, 9]
>>> lookup.extend([4])                            # the reply leaves the quote: no earlier 6 4 or 5 6 4
>>> lookup.draft(3)
[]
"""

from __future__ import annotations

from collections.abc import Iterable


class PromptLookup:
    """The tokens of one sequence (prompt, then reply) and, for each n-gram size, where each n-gram was last followed.

    Indexing is incremental (a few dict writes a token), so a prompt is indexed chunk by chunk as it is read and a
    draft is one dict read per n-gram size, whatever the prompt's length.
    """

    __slots__ = ("_follow", "n_max", "n_min", "tokens")

    def __init__(self, *, n_max: int = 3, n_min: int = 2) -> None:
        # n_min 2: a single token ("the", ",") is followed by something else too often for its drafts to pay
        if not 1 <= n_min <= n_max:
            raise ValueError("need 1 <= n_min <= n_max")
        self.n_max = n_max
        self.n_min = n_min
        self.tokens: list[int] = []
        # _follow[n - n_min][ngram] = index of the token after that n-gram's latest occurrence
        self._follow: list[dict[tuple[int, ...], int]] = [{} for _ in range(n_min, n_max + 1)]

    def extend(self, tokens: Iterable[int]) -> None:
        """Append tokens (read prompt tokens or generated ones)."""
        own = self.tokens
        for token in tokens:
            end = len(own)  # the n-grams ending just before `token` now have a follower
            for n, follow in zip(range(self.n_min, self.n_max + 1), self._follow):
                if end >= n:
                    follow[tuple(own[end - n : end])] = end
            own.append(token)

    def draft(self, k: int) -> list[int]:
        """Up to `k` tokens that followed the latest earlier occurrence of the last n tokens (longest n first).

        >>> lookup = PromptLookup(n_max=3, n_min=2)
        >>> lookup.extend([1, 2, 3, 10, 11, 12, 9, 2, 3, 20, 21, 1, 2, 3])
        >>> lookup.draft(2)         # 1 2 3 occurred before 10 (2 3 alone occurred later, before 20)
        [10, 11]
        >>> lookup.extend([99, 2, 3])
        >>> lookup.draft(3)         # now only 2 3 matches; its latest earlier occurrence is before 99
        [99, 2, 3]
        >>> lookup.draft(5)         # that is a loop: it goes round again
        [99, 2, 3, 99, 2]
        >>> lookup.extend([7]), lookup.draft(4)  # 3 7 occurs nowhere earlier, and single tokens are no match
        (None, [])
        """
        own = self.tokens
        if k <= 0:
            return []
        for n, follow in zip(range(self.n_max, self.n_min - 1, -1), reversed(self._follow)):
            if len(own) <= n:
                continue
            start = follow.get(tuple(own[-n:]))
            if start is not None:
                # an occurrence close to the end is a loop (a repeated word, a list's pattern): it goes round again
                period = len(own) - start
                return [own[start + i % period] for i in range(k)]
        return []
