"""Build (once per machine kind) and load formers' C++ CPU kernels.

The source is compiled with torch.utils.cpp_extension on first use and cached under
~/.cache/formers/kernels (or $FORMERS_KERNELS_CACHE); later processes only load the shared library.
The instruction set is chosen from the CPU's flags (AVX-512 with VNNI and BF16, AVX-512 with VNNI, AVX-512,
else AVX2+FMA, else plain C++) and is part of the cached library's name, so a cache directory shared between
machine kinds never runs an instruction the CPU lacks. Without a C++ compiler or ninja, or with FORMERS_NO_KERNELS=1, `load()`
returns None quietly and callers keep torch's own operators.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.cpp")
HEADERS = [Path(__file__).with_name(name) for name in ("attention.h", "attention_bf16.h", "bf16_match.h", "gemv.h", "decode_layer.h", "pool.h", "quant.h", "moe.h", "rotary.h", "torch_steps.h")]
# Builds use ATen's vector functions of their width (attention_bf16.h, torch_steps.h): the ones torch's own kernels
# run on such a CPU
_ATEN_AVX512 = ["-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"]
_ATEN_AVX2 = ["-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
_ISA_FLAGS = {
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c", *_ATEN_AVX512],
    "avx512vnni": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c",
                   *_ATEN_AVX512],
    "avx512bf16": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx512bf16", "-mavx2",
                   "-mfma", "-mf16c", *_ATEN_AVX512],
    "avx2": ["-mavx2", "-mfma", "-mf16c", *_ATEN_AVX2],
    "generic": [],
}
_state: dict[str, ModuleType | None] = {}


def cpu_isa() -> str:
    """The widest instruction set the kernels have a path for that this CPU supports."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= set(flags):
        if "avx512_vnni" not in flags:  # VNNI: quant.h's int8 dot products
            return "avx512"
        return "avx512bf16" if "avx512_bf16" in flags else "avx512vnni"  # BF16: gemv.h's bfloat16 dot products
    if {"avx2", "fma"} <= set(flags):
        return "avx2"
    return "generic"


def cache_dir() -> Path:
    root = os.environ.get("FORMERS_KERNELS_CACHE") or Path.home() / ".cache" / "formers" / "kernels"
    return Path(root)


def _toolchain_present() -> bool:
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return False
    try:
        from torch.utils.cpp_extension import is_ninja_available
    except ImportError:
        return False
    return is_ninja_available()


def load() -> ModuleType | None:
    """The compiled kernel module, or None where it cannot be built here (the result is remembered)."""
    if "module" in _state:
        return _state["module"]
    module = None
    if os.environ.get("FORMERS_NO_KERNELS", "") not in ("", "0") or not _toolchain_present():
        _state["module"] = None
        return None
    try:
        import torch
        from torch.utils.cpp_extension import load as cpp_load

        isa = cpu_isa()
        sources = b"".join(path.read_bytes() for path in [SOURCE, *HEADERS])
        # hidden symbols: two builds in one process (an A/B of kernel sources) must not bind to each other's
        # inline functions, which share names but not code
        flags = ["-O3", "-fopenmp", "-fvisibility=hidden", "-fvisibility-inlines-hidden", *_ISA_FLAGS[isa]]
        digest = hashlib.sha256(sources + torch.__version__.encode() + " ".join(flags).encode()).hexdigest()[:10]
        name = f"formers_kernels_{isa}_{digest}"
        folder = cache_dir() / name
        folder.mkdir(parents=True, exist_ok=True)
        module = _import_built(folder, name)
        if module is None:
            with _build_lock(folder):
                module = cpp_load(name=name, sources=[str(SOURCE)], extra_cflags=flags, extra_ldflags=["-fopenmp"],
                                  extra_include_paths=[str(SOURCE.parent)],
                                  build_directory=str(folder), verbose=False)
    except Exception as error:  # a broken toolchain must not break inference: torch's operators still work
        logger.info("formers C++ kernels unavailable, using torch operators: %s", error)
        module = None
    _state["module"] = module
    return module


def _import_built(folder: Path, name: str) -> ModuleType | None:
    """The library a previous process finished building in `folder`, imported directly, else None. (Going through
    cpp_extension again would take its file lock, which a process killed while holding it never releases.)"""
    import importlib.util

    library = folder / f"{name}.so"
    if not library.exists() or (folder / "lock").exists():
        return None
    spec = importlib.util.spec_from_file_location(name, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _build_lock(folder: Path):
    """Held while this process builds in `folder`: an flock, which the kernel releases when its holder dies. A
    `lock` file cpp_extension left there is then stale (its builder was killed) and is removed before building."""
    import fcntl

    with open(folder / ".formers-build", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        (folder / "lock").unlink(missing_ok=True)
        yield
