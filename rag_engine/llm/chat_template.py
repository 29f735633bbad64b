"""The model's own chat template (Jinja, from the GGUF), rendered as `Llama.create_chat_completion` renders it."""

from __future__ import annotations

from collections.abc import Sequence

from rag_engine.llm.base import ChatMessage

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
