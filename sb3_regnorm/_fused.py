"""Build, load and call the fused C++ kernels of RegularityNorm (``csrc/regnorm.cpp``).

The extension is compiled on first use with ``torch.utils.cpp_extension.load`` and cached under
``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``): the first import costs one compile (~30-60 s),
later processes load the cached library in milliseconds. ``SB3_REGNORM_FUSED=0`` disables it; a machine without a
compiler (or ninja) gets one warning and the pure-PyTorch path, which computes the same numbers.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Final

import torch

__all__ = ["DTYPES", "ENV_VAR", "available", "load_error", "ops", "overflow_message", "translate"]

DTYPES: Final = (torch.float32, torch.float64)
ENV_VAR: Final = "SB3_REGNORM_FUSED"
SOURCE: Final = Path(__file__).resolve().parent / "csrc" / "regnorm.cpp"
_CFLAGS: Final = ["-O3", "-march=native", "-mprefer-vector-width=256", "-fopenmp-simd", "-fno-math-errno", "-ffp-contract=off"]
_ERROR_TOKEN: Final = re.compile(r"sb3_regnorm:([a-z_]+):([^\n]*?)(?:\n|$)")


class _Loader:
    """One load attempt per process; ``ops`` holds the two op overloads once loaded."""

    def __init__(self) -> None:
        self.ops: tuple[Any, Any] | None = None
        self.tried = False
        self.error: str | None = None


_LOADER: Final = _Loader()


def _disabled() -> bool:
    return os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off")


def _build_tag() -> str:
    """A short hash of the source, the flags and the CPU's features: one cache folder per build. The build uses
    ``-march=native``, so a cache shared between machines must not hand one CPU's library to another, and checkouts
    of different versions must not overwrite each other's library."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    key = f"{platform.machine()} {flags} {_CFLAGS} {torch.__version__}".encode() + SOURCE.read_bytes()
    return hashlib.sha1(key).hexdigest()[:12]


def _ensure_ninja_on_path() -> None:
    """torch.utils.cpp_extension runs ``ninja``; a pip-installed ninja lives next to the interpreter, maybe off PATH."""
    if shutil.which("ninja"):
        return
    try:
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    except ImportError:
        pass


def _load() -> None:
    _LOADER.tried = True
    if _disabled():
        _LOADER.error = f"disabled by {ENV_VAR}"
        return
    try:
        from torch.utils import cpp_extension

        _ensure_ninja_on_path()
        cpp_extension.load(
            name=f"sb3_regnorm_fused_{_build_tag()}",
            sources=[str(SOURCE)],
            extra_cflags=_CFLAGS,
            is_python_module=False,
            verbose=False,
        )
        _LOADER.ops = (torch.ops.sb3_regnorm.rn_train.default, torch.ops.sb3_regnorm.rn_eval.default)
    except Exception as exc:  # no compiler, no ninja, a failed build: all mean "use the pure path"
        _LOADER.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
        warnings.warn(
            f"sb3_regnorm: the fused RegularityNorm kernel could not be built ({_LOADER.error}); using the pure "
            f"PyTorch path (same numbers, slower). Set {ENV_VAR}=0 to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )


def available() -> bool:
    """Whether the fused kernels are loaded (building them on the first call unless disabled)."""
    return ops() is not None


def ops() -> tuple[Any, Any] | None:
    """The (train, eval) op overloads, or None where the kernels are disabled or could not be built."""
    if not _LOADER.tried:
        _load()
    return _LOADER.ops


def load_error() -> str | None:
    """Why the fused kernels are not in use (None when they are, or before the first :func:`available`)."""
    return _LOADER.error


def overflow_message(dtype: torch.dtype, gain: float, var: float) -> str:
    return (
        f"RegularityNorm output overflowed {dtype}: gain {gain:.3g} with running variance {var:.3g}. The layer's "
        "statistics have collapsed (common when many RN layers are stacked: their first gains are ~0), or the "
        "activations are too large for the dtype; set max_gain or momentum, use fewer RN layers, or a wider dtype"
    )


def translate(exc: RuntimeError) -> Exception:
    """The Python exception the pure path raises for a kernel error token; other errors pass through unchanged."""
    match = _ERROR_TOKEN.search(str(exc))
    if match is None:
        return exc
    code, detail = match.groups()
    if code == "nonfinite_train":
        return ValueError(
            "RegularityNorm received non-finite activations (NaN or inf) in training mode; "
            "its running statistics were left unchanged"
        )
    if code == "nan_eval":
        return ValueError("RegularityNorm received non-finite activations (NaN or inf); no gain can be scored for them")
    if code == "stats":
        return FloatingPointError(
            "RegularityNorm statistics overflowed (activations too large for the running Gaussian); "
            "its running statistics were left unchanged"
        )
    if code == "overflow":
        dtype_name, gain, var = detail.split(":")[:3]
        dtype = getattr(torch, dtype_name.lower(), torch.float32) if dtype_name else torch.float32
        if not isinstance(dtype, torch.dtype):
            dtype = torch.float32
        return FloatingPointError(overflow_message(dtype, float(gain), float(var)))
    return exc
