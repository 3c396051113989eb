"""Device and precision policy: which device runs the model, at which compute precision."""

import functools
import warnings

#: Raised whenever sklearn_albert changes how it computes a vector's bits on some device
#: (kernels, the shapes it calls them with, the order of sums), so that a cache never
#: mixes vectors computed before and after (:func:`numerics_identity`). 2: bfloat16 Linear
#: layers on CPUs with AMX run in one-thread calls of 128 rows (32-row calls before). Calls
#: of 256 and 64 rows since give every row the bits of 128-row calls (on one thread, every
#: shape tried; ``tests/test_packed_linear.py`` checks it on each AMX machine it runs on),
#: so they kept version 2.
NUMERICS_VERSION = 2


def resolve_device(device):
    """Turn ``"auto"`` or a device string into a usable ``torch.device``.

    Parameters
    ----------
    device : str
        ``"auto"`` picks cuda if available, else mps, else cpu.

    Returns
    -------
    torch.device
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"Got device={device!r}, which torch does not understand. Use 'auto', "
            "'cpu', 'cuda', 'cuda:0' or 'mps'."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"Got device={device!r} but CUDA is not available on this machine. "
            "Use device='auto' or device='cpu'."
        )
    if resolved.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(
            f"Got device={device!r} but MPS is not available on this machine. "
            "Use device='auto' or device='cpu'."
        )
    return resolved


def cpu_supports_bfloat16():
    """Whether this CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX)."""
    return _cpu_probe("_is_avx512_bf16_supported") or cpu_has_amx()


@functools.cache
def cpu_has_amx():
    """Whether this CPU has AMX tiles (Intel Xeon from Sapphire Rapids on)."""
    return _cpu_probe("_is_amx_tile_supported")


def _cpu_probe(name):
    """``torch.cpu.<name>()``, False where this PyTorch build lacks the probe."""
    import torch

    probe = getattr(getattr(torch, "cpu", None), name, None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:  # pragma: no cover - probe unavailable on this build
        return False


def numerics_identity(device, compute_dtype):
    """What a vector's bits depend on, beside the model, the text and the settings.

    Two processes with the same identity compute the same bits for the same text (on
    CPU; GPU kernels are not made batch-invariant); a cache namespace includes it, so
    that vectors computed by another sklearn_albert or PyTorch version, on another kind of
    CPU or GPU, or with a CPU environment switch turned off, are never read as this
    process's. It names :data:`NUMERICS_VERSION`, the PyTorch version, the device (CPU: the
    instruction set PyTorch dispatches to and whether AMX is there; GPU: its name and
    compute capability), the OpenVINO version for int8, and the CPU switches turned off
    in the environment now (``_cpu/__init__.py``).

    Parameters
    ----------
    device : str
        The device that runs (``"cpu"``, ``"cuda:0"``...).
    compute_dtype : str
        The compute precision's name (``"int8"`` adds the OpenVINO version).

    Returns
    -------
    identity : str
    """
    import torch

    from ._cpu import CPU_SWITCHES, switched_on

    kind = str(device).split(":")[0]
    parts = [f"numerics-{NUMERICS_VERSION}", f"torch-{torch.__version__}", kind]
    if kind == "cpu":
        parts.append(torch.backends.cpu.get_cpu_capability())
        parts.append("amx" if cpu_has_amx() else "no-amx")
        parts.extend(f"{name}=0" for name in CPU_SWITCHES if not switched_on(name))
    elif kind == "cuda":
        parts.append(torch.cuda.get_device_name(device))
        parts.append("sm-{}.{}".format(*torch.cuda.get_device_capability(device)))
    if compute_dtype == INT8:
        parts.append(f"openvino-{_package_version('openvino')}")
    return "/".join(parts)


@functools.cache
def _package_version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


#: The precision name for CPU int8 quantization (not a torch dtype).
INT8 = "int8"


def resolve_dtype(dtype, device):
    """The compute precision for ``dtype`` on ``device``, as a ``torch.dtype``.

    ``"auto"`` is float16 on CUDA (bfloat16 where the GPU supports it), bfloat16 on a CPU
    with native bfloat16 instructions, float32 otherwise. Reduced precision is applied
    with autocast: weights stay float32, normalisations and pooling run in float32.
    """
    import torch

    named = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype == INT8:
        if device.type != "cpu":
            raise ValueError(
                f"Got dtype='int8' with device={str(device)!r}, but int8 quantization "
                "runs on CPU only. Use device='cpu', or dtype='float16'/'bfloat16' on a GPU."
            )
        return INT8
    if dtype != "auto":
        return named[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_supports_bfloat16():
        return torch.bfloat16
    return torch.float32


def dtype_name(torch_dtype):
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    if torch_dtype == INT8:
        return INT8
    return str(torch_dtype).removeprefix("torch.")


def warn_device_change(estimator_name, previous, current):
    """Warn that a persisted estimator now runs somewhere else."""
    warnings.warn(
        f"This {estimator_name} was fitted on device {previous!r}, which is not available "
        f"here; it now runs on {current!r}. Set device explicitly to silence this warning.",
        UserWarning,
        stacklevel=3,
    )


def available_device(fitted_device, requested):
    """The fitted device if this machine has it, else the best one for ``requested``.

    Parameters
    ----------
    fitted_device : str
        The device an estimator was fitted (or saved) on.
    requested : str
        The estimator's ``device`` parameter: "auto" falls back to this machine's best
        device, anything else to the CPU.

    Returns
    -------
    device : torch.device
    moved : bool
        Whether the device differs from ``fitted_device``.
    """
    try:
        return resolve_device(fitted_device), False
    except ValueError:
        return resolve_device("auto" if requested == "auto" else "cpu"), True
