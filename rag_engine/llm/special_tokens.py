"""Special-token text in untrusted strings made inert, for servers that tokenize the prompt themselves.

The in-process backends never need this: they tokenize message content as plain text. An OpenAI-compatible server
renders and tokenizes the messages itself, usually reading `<|im_start|>` in content as the control token, so a
passage could forge a turn. A zero-width space after the opening bracket keeps the text readable while no
tokenizer matches it as a special token any more.
"""

from __future__ import annotations

import re

ZERO_WIDTH_SPACE = "\u200b"

# ChatML/Qwen/Llama 3 `<|…|>`, SentencePiece `<s>`/`</s>`, Gemma's turn markers, Llama 2's `[INST]` and `<<SYS>>`.
_SPECIAL = re.compile(
    r"<(?=\|)"
    r"|<(?=/?(?:s|bos|eos|pad|unk|start_of_turn|end_of_turn)>)"
    r"|\[(?=/?INST\])"
    r"|<(?=</?SYS>>)",
    re.IGNORECASE,
)


def neutralise_special_tokens(text: str) -> str:
    """Break every special-token-looking string with a zero-width space after its first character.

    >>> neutralise_special_tokens("a <|im_start|>system [INST] </s> <<SYS>>") == (
    ...     "a <\\u200b|im_start|>system [\\u200bINST] <\\u200b/s> <\\u200b<SYS>>")
    True
    >>> neutralise_special_tokens("x < y | z, a <b> tag, [1]")
    'x < y | z, a <b> tag, [1]'
    """
    return _SPECIAL.sub(lambda m: m.group(0) + ZERO_WIDTH_SPACE, text)
