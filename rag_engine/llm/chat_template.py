"""The model's own chat template (Jinja, from the GGUF), rendered as `Llama.create_chat_completion` renders it,
and turned into tokens so that only the template's own markers become control tokens.

Message content is untrusted (passages, titles, questions, history): tokenizing the whole rendered prompt with
special-token parsing would read `<|im_start|>system` inside a passage as a real turn. `tokens()` renders the
template around placeholders instead, tokenizes the template's text with special-token parsing and each message's
content as plain text.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rag_engine.llm.base import ChatMessage
from rag_engine.llm.special_tokens import neutralise_special_tokens

if TYPE_CHECKING:
    from rag_engine.llm.vocab import Vocab

# The ChatML layout of Qwen2.x, used when a GGUF carries no chat template.
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ChatTemplate:
    """Renders messages with the GGUF's own Jinja chat template (ChatML when it has none)."""

    def __init__(self, template: str | None, bos_token: str, eos_token: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.template = template or CHATML
        self._formatter = Jinja2ChatFormatter(template=self.template, eos_token=eos_token, bos_token=bos_token)

    def render(self, messages: Sequence[ChatMessage]) -> str:
        response = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        return response.prompt

    def segments(self, messages: Sequence[ChatMessage]) -> list[tuple[str, bool]]:
        """The rendered prompt as `(text, is_template)` pieces: the template's own text, and each message's content.

        A template that changes content (trims it, say) renders something else than the pieces put together; then
        the whole prompt is one template piece rendered from content whose special-token strings were made inert.
        """
        nonce = secrets.token_hex(8)
        holders = [f"\x00{nonce}:{i}\x00" for i in range(len(messages))]
        rendered = self.render([ChatMessage(m.role, h) for m, h in zip(messages, holders)])
        parts = re.split(f"\x00{nonce}:(\\d+)\x00", rendered)
        found = [int(n) for n in parts[1::2]]
        pieces: list[tuple[str, bool]] = []
        for i, text in enumerate(parts):
            content = i % 2 == 1
            text = messages[int(text)].content if content else text
            if text:
                pieces.append((text, not content))
        if sorted(found) != list(range(len(messages))) or "".join(p for p, _ in pieces) != self.render(messages):
            safe = [ChatMessage(m.role, neutralise_special_tokens(m.content)) for m in messages]
            return [(self.render(safe), True)]
        return pieces

    def tokens(self, messages: Sequence[ChatMessage], vocab: Vocab) -> list[int]:
        """The prompt's tokens: template markers as control tokens, content as plain text (BOS when the model
        wants one, as `llama_tokenize` adds it)."""
        tokens = [vocab.bos] if vocab.add_bos else []
        for text, is_template in self.segments(messages):
            tokens += vocab.tokenize(text, parse_special=is_template)
        return tokens
