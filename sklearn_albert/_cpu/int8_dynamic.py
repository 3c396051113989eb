"""Dynamic int8: Linear layers quantized to int8, activations scaled per batch (CPU only)."""

import copy
import warnings

import torch  # imported lazily by _loading.py, never at package import


def quantize_dynamic_int8(model):
    """A copy of ``model`` with dynamically quantized int8 ``Linear`` layers.

    Weights are quantized per output channel: on the real MiniLM that raised the mean
    cosine to float32 embeddings from 0.934 (torch's per-tensor default) to 0.972, and ran
    no slower.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # torch deprecates the eager quantization API in favour of torchao; it still works.
        warnings.simplefilter("ignore")
        return quantize_dynamic(
            copy.deepcopy(model),
            {torch.nn.Linear: per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )
