"""Write a random-weight GGUF with Qwen2.5-3B-Instruct's shapes (or a tiny one) and quantize it to Q4_K_M.

Speed does not depend on weight values, so a benchmark needs only the real shapes, the real tokenizer and the real
chat template. The tokenizer fields are copied from llama.cpp's `models/ggml-vocab-qwen2.gguf`; tensors are named
as `convert_hf_to_gguf.py` names them. The rows of the special tokens in the (tied) embedding are zero, so their
logits are 0 while the best of the other 151k random logits is several sigma above: a random model then never stops
early on `<|im_end|>`/`<|endoftext|>`, and every benchmark request generates exactly the tokens it asked for.

    python bench/make_qwen3b_gguf.py --llama-src vendor/llama.cpp --out /tmp/qwen3b [--preset tiny]

Needs numpy and the `gguf-py` folder of a llama.cpp source tree (PyPI's gguf can lag behind the vendored llama.cpp);
quantizing uses `llama_cpp.llama_model_quantize`, so llama-cpp-python must be importable.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, slots=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    context: int = 32768


PRESETS = {
    # Qwen/Qwen2.5-3B-Instruct config.json (tie_word_embeddings: true)
    "3b": Shape(hidden=2048, layers=36, heads=16, kv_heads=2, intermediate=11008),
    # small enough for a 2-core CPU; K-quants need rows that are multiples of 256
    "tiny": Shape(hidden=256, layers=2, heads=4, kv_heads=2, intermediate=512),
}

_COPIED_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.chat_template",
)


def write_f16_gguf(llama_src: Path, out: Path, shape: Shape, seed: int = 0) -> Path:
    """Write the F16 GGUF tensor by tensor (a 3B model never sits in memory whole)."""
    sys.path.insert(0, str(llama_src / "gguf-py"))
    import gguf  # the vendored one, matching this llama.cpp

    vocab = gguf.GGUFReader(str(llama_src / "models" / "ggml-vocab-qwen2.gguf"))
    n_vocab = len(vocab.fields["tokenizer.ggml.tokens"].data)
    token_types = np.asarray(vocab.fields["tokenizer.ggml.token_type"].contents())

    writer = gguf.GGUFWriter(str(out), "qwen2")
    writer.add_name("Qwen2.5-3B-shaped random" if shape == PRESETS["3b"] else "tiny random qwen2")
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.intermediate)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for key in _COPIED_KEYS:
        field = vocab.fields[key]
        value = field.contents()
        if isinstance(value, list):
            writer.add_array(key, value)
        else:
            writer.add_string(key, value)
    # As the real Qwen2.5-Instruct GGUF: the chat turn ends with <|im_end|>.
    writer.add_eos_token_id(151645)
    writer.add_pad_token_id(151643)
    writer.add_bos_token_id(151643)
    writer.add_add_bos_token(False)

    head_dim = shape.hidden // shape.heads
    kv_dim = head_dim * shape.kv_heads
    tensors: list[tuple[str, tuple[int, ...], float]] = [("token_embd.weight", (n_vocab, shape.hidden), 0.02)]
    for i in range(shape.layers):
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", (shape.hidden,), 0.0),
            (p + "attn_q.weight", (shape.hidden, shape.hidden), 0.02),
            (p + "attn_q.bias", (shape.hidden,), 0.02),
            (p + "attn_k.weight", (kv_dim, shape.hidden), 0.02),
            (p + "attn_k.bias", (kv_dim,), 0.02),
            (p + "attn_v.weight", (kv_dim, shape.hidden), 0.02),
            (p + "attn_v.bias", (kv_dim,), 0.02),
            (p + "attn_output.weight", (shape.hidden, shape.hidden), 0.02),
            (p + "ffn_norm.weight", (shape.hidden,), 0.0),
            (p + "ffn_gate.weight", (shape.intermediate, shape.hidden), 0.02),
            (p + "ffn_up.weight", (shape.intermediate, shape.hidden), 0.02),
            (p + "ffn_down.weight", (shape.hidden, shape.intermediate), 0.02),
        ]
    tensors.append(("output_norm.weight", (shape.hidden,), 0.0))

    def is_norm_or_bias(name: str) -> bool:
        return name.endswith(("norm.weight", ".bias"))

    for name, dims, _ in tensors:
        dtype = np.float32 if is_norm_or_bias(name) else np.float16
        nbytes = int(np.prod(dims)) * np.dtype(dtype).itemsize
        writer.add_tensor_info(name, dims, np.dtype(dtype), nbytes)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    normal = _normal_sampler(seed)
    for name, dims, scale in tensors:
        if name.endswith("norm.weight"):
            data = np.ones(dims, dtype=np.float32)
        elif name.endswith(".bias"):
            data = normal(dims, scale).astype(np.float32)
        else:
            data = normal(dims, scale)
            if name == "token_embd.weight":
                data[token_types != 1] = 0  # special and padding tokens: never the argmax (see module doc)
        writer.write_tensor_data(data)
    writer.close()
    return out


def _normal_sampler(seed: int):
    """f16 normal samples: on the GPU through PyTorch when there is one (3B values in seconds), else numpy."""
    try:
        import torch

        if torch.cuda.is_available():
            generator = torch.Generator(device="cuda").manual_seed(seed)

            def sample(dims: tuple[int, ...], scale: float) -> np.ndarray:
                t = torch.randn(dims, generator=generator, device="cuda", dtype=torch.float16) * scale
                return t.cpu().numpy()

            return sample
    except ImportError:
        pass
    rng = np.random.default_rng(seed)

    def sample(dims: tuple[int, ...], scale: float) -> np.ndarray:
        return (rng.standard_normal(dims, dtype=np.float32) * scale).astype(np.float16)

    return sample


def quantize_q4_k_m(f16: Path, out: Path, threads: int = 0) -> Path:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(f16).encode(), str(out).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize failed with {rc}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-src", type=Path, required=True, help="llama.cpp source tree (holds gguf-py/, models/)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="3b")
    parser.add_argument("--keep-f16", action="store_true")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    f16 = args.out / f"qwen-{args.preset}-f16.gguf"
    q4 = args.out / f"qwen-{args.preset}-q4_k_m.gguf"
    t0 = time.perf_counter()
    write_f16_gguf(args.llama_src, f16, PRESETS[args.preset])
    t1 = time.perf_counter()
    quantize_q4_k_m(f16, q4)
    t2 = time.perf_counter()
    if not args.keep_f16:
        f16.unlink()
    print(f"wrote {q4} ({q4.stat().st_size / 1e9:.2f} GB): f16 {t1 - t0:.1f}s, quantize {t2 - t1:.1f}s")


if __name__ == "__main__":
    main()
