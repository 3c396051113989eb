"""Device and precision policy: which device runs the model, at which compute precision."""

import warnings


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
    import torch

    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:  # pragma: no cover - probe unavailable on this build
            continue
    return False


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
