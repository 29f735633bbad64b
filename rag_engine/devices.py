"""Where the models would run, told without importing torch or llama.cpp (`paperbot status` must start fast).

Both answers read what is installed: the same facts `torch.cuda.is_available()` and
`llama_cpp.llama_supports_gpu_offload()` rest on, without the seconds their imports take.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

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
