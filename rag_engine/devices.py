"""Where the models would run, told without importing torch or llama.cpp (`paperbot status` must start fast).

Both answers read what is installed: the same facts `torch.cuda.is_available()` and
`llama_cpp.llama_supports_gpu_offload()` rest on, without the seconds their imports take.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag_engine.settings import EngineSettings

#: ggml's GPU backends, each a shared library beside libllama (llama.cpp loads the ones it was built with).
_GPU_BACKENDS = ("cuda", "hip", "metal", "vulkan", "sycl", "musa", "opencl", "cann")
_NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def llama_cpp_has_gpu_offload() -> bool:
    """Whether the installed llama-cpp-python was built with a GPU backend."""
    package = _package_dir("llama_cpp")
    if package is None:
        return False
    return any(any(package.rglob(f"*ggml-{backend}*")) for backend in _GPU_BACKENDS)


def encoder_runs_on_cuda(device: str) -> bool:
    """Whether the ColBERT encoder would pick CUDA for `device` ("auto", "cpu", "cuda"): a CUDA build of torch and
    a loaded NVIDIA driver."""
    if device == "cpu":
        return False
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return False
    package = _package_dir("torch")
    cuda_build = "+cpu" not in version and package is not None and any((package / "lib").glob("libtorch_cuda*"))
    return cuda_build and _NVIDIA_DRIVER.exists()


@dataclass(frozen=True)
class ModelsDescription:
    """The engine's models and where they would run, in words (`paperbot status`)."""

    encoder: str
    llm: str


def describe_models(settings: EngineSettings) -> ModelsDescription:
    """Say which models `settings` select and where they would run, without loading either."""
    encoder = f"{settings.colbert_model} on {'CUDA' if encoder_runs_on_cuda(settings.device) else 'CPU'}"
    if settings.llm_backend == "openai":
        llm = f"{settings.llm_model} via {settings.llm_base_url}"
    elif llama_cpp_has_gpu_offload():
        layers = "all layers" if settings.n_gpu_layers < 0 else f"{settings.n_gpu_layers} layers"
        llm = f"{settings.llm_model} — llama.cpp with GPU offload ({layers} on the GPU)"
    else:
        llm = (f"{settings.llm_model} — llama.cpp on the CPU (this build has no GPU support; "
               "reinstall with CMAKE_ARGS=-DGGML_CUDA=on for CUDA)")
    return ModelsDescription(encoder=encoder, llm=llm)
