"""CPU kernels for inference: packed Linear weights, length-aware attention, int8.

Each speed-up has its own environment switch, read when a model's inference copy is built
(models already loaded keep their copy): ``SKLEARN_ALBERT_CPU_PACKING=0`` keeps plain
``nn.Linear`` layers (no oneDNN packing, no fused GELU), ``SKLEARN_ALBERT_CPU_ATTENTION=0``
keeps transformers' SDPA attention, ``SKLEARN_ALBERT_CPU_ERF_GELU=0`` keeps a checkpoint's
tanh-approximated GELU in bfloat16 (the exact GELU it approximates runs instead: 4x
faster on CPU, within 4.7e-4 of it). ``SKLEARN_ALBERT_CPU_STREAMS`` (read at each transform,
``streams.py``) sets how many batches run side by side. ``SKLEARN_ALBERT_CPU_BATCH_INVARIANT=0``
(read at each call) lets a text's vector depend on its batch again (``attention.py``,
``packed_linear.py``).
``SKLEARN_ALBERT_CPU_UNPADDED=0`` (read at each call) runs ALBERT on padded batches again
(``unpadded.py``).
"""

import os

#: Set to 0 to keep plain ``nn.Linear`` layers on CPU (no packing, no fused GELU).
PACKING_SWITCH = "SKLEARN_ALBERT_CPU_PACKING"

#: Set to 0 to keep SDPA attention on CPU instead of matmuls for short sequences.
ATTENTION_SWITCH = "SKLEARN_ALBERT_CPU_ATTENTION"

#: Set to 0 to let a text's vector depend on the batch it runs in (read at each call):
#: faster on texts over 96 tokens, where SDPA's kernel runs instead (``attention.py``), and
#: on CPUs with AMX, where bfloat16 Linear layers then run each matrix in one call on all
#: threads instead of one-thread calls of up to 256 rows (``packed_linear.rows_per_call``).
BATCH_INVARIANT_SWITCH = "SKLEARN_ALBERT_CPU_BATCH_INVARIANT"

#: Set to 0 to run ALBERT's inference copies on padded batches (read at each call).
UNPADDED_SWITCH = "SKLEARN_ALBERT_CPU_UNPADDED"

#: Set to 0 to keep the checkpoint's tanh-approximated GELU in bfloat16 on CPU, instead of
#: the exact GELU it approximates (``packed_linear._swap_tanh_gelu``).
ERF_GELU_SWITCH = "SKLEARN_ALBERT_CPU_ERF_GELU"

#: Every switch above: each one turned off is part of a cache namespace
#: (``_devices.numerics_identity``), as each changes a vector's bits.
CPU_SWITCHES = (
    PACKING_SWITCH,
    ATTENTION_SWITCH,
    BATCH_INVARIANT_SWITCH,
    UNPADDED_SWITCH,
    ERF_GELU_SWITCH,
)


def switched_on(name):
    """Whether the environment switch ``name`` is on (the default) rather than 0/false/off."""
    return os.environ.get(name, "1").strip().lower() not in {"0", "false", "no", "off"}
