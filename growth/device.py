"""Which torch device a run trains on, and how: precision and compilation."""

from __future__ import annotations

import torch

from .config import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA, else MPS, else CPU) or a torch device name; ``ConfigError`` if unusable."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available")
    return device


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether the training step runs under bf16 autocast: ``bf16`` always, ``fp32`` never, ``auto`` on
    a GPU that computes in bf16 natively (Ampere and later), where it is faster at no measured cost."""
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


#: ``compile`` unset (auto) compiles on a CPU with at least this many threads and steps in the budget. Measured
#: on a 2-core CPU (runs/recorded/speed/README.md): compiling resnet20-thin costs 33-44 s per architecture;
#: with 2 threads the compiled step is 1.45x faster (it pays after ~1,000 steps, a whole 1e13 run of ~5,000
#: steps ends 1.35x sooner), with 1 thread only 1.18x (~2,100 steps to pay; 1.09x sooner over the run, and
#: less than nothing once growth recompiles a few times), so one thread stays eager.
AUTO_COMPILE_MIN_THREADS = 2
AUTO_COMPILE_MIN_STEPS = 4000


def compile_pays(device: torch.device, steps: float, threads: int) -> bool:
    """Whether ``compile`` unset (auto) compiles: on a CPU with :data:`AUTO_COMPILE_MIN_THREADS` threads when
    the budget buys :data:`AUTO_COMPILE_MIN_STEPS` ``steps`` of the starting network. Not on a GPU, where
    it has not been measured.

    >>> cpu = torch.device("cpu")
    >>> compile_pays(cpu, steps=5000, threads=2), compile_pays(cpu, steps=5000, threads=1)
    (True, False)
    >>> compile_pays(cpu, steps=500, threads=2), compile_pays(torch.device("cuda"), steps=5000, threads=2)
    (False, False)
    """
    return device.type == "cpu" and threads >= AUTO_COMPILE_MIN_THREADS and steps >= AUTO_COMPILE_MIN_STEPS


def compiler_missing(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot build kernels for ``device`` here, or None. Checked on a CPU only, where
    inductor compiles C++."""
    if device.type != "cpu":
        return None
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as err:  # InvalidCxxCompiler, or an inductor that cannot even be imported here
        return f"torch.compile finds no working C++ compiler for its CPU kernels ({type(err).__name__})"
    return None


def check_compile(compile: bool | None, device: torch.device, remedy: str = "run with --no-compile") -> None:
    """``ConfigError`` (one line) if ``compile`` is asked for on a CPU that cannot compile; auto never fails."""
    missing = compiler_missing(device) if compile else None
    if missing:
        raise ConfigError(f"--compile: {missing}: install one (e.g. g++) or {remedy}")
