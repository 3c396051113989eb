"""Long texts: split token ids into overlapping windows, and merge the windows' summaries.

With ``long_text="chunk"`` a text longer than the model's window is cut into windows of
``max_length`` tokens (special tokens included) that overlap by ``stride`` tokens. Every
window goes through the same batched encode loop as ordinary texts; the per-window
summaries (cls, mean and max of each layer, and the pooler output) are then merged into one
summary per text, from which pooling proceeds as usual. A text that fits in one window has
exactly one window, so it gets the same vector under "truncate" and "chunk".
"""

import numpy as np

CHUNK_AGGREGATIONS = ("mean", "max", "weighted")


def split_into_windows(content_ids, room, stride):
    """Overlapping slices of ``content_ids`` of at most ``room`` tokens.

    Parameters
    ----------
    content_ids : list of int
        Token ids of one text, without special tokens.
    room : int
        Content tokens per window (``max_length`` minus the special tokens).
    stride : int
        Tokens shared by consecutive windows; ``0 <= stride < room``.

    Returns
    -------
    windows : list of list of int
        At least one window (an empty text gives one empty window). The last window ends
        at the end of the text.
    """
    if len(content_ids) <= room:
        return [content_ids]
    step = room - stride
    starts = list(range(0, len(content_ids) - room, step)) + [len(content_ids) - room]
    return [content_ids[start : start + room] for start in starts]


def merge_windows(summaries, poolers, n_tokens, how):
    """One summary from the summaries of a text's windows.

    Parameters
    ----------
    summaries : ndarray of shape (n_windows, 3, n_layers, dim)
    poolers : ndarray of shape (n_windows, dim) or None
    n_tokens : ndarray of shape (n_windows,)
        Tokens in each window, special tokens included.
    how : {"mean", "max", "weighted"}
        Average the windows, take their element-wise maximum, or average them weighted
        by their token counts.

    Returns
    -------
    summary : ndarray of shape (3, n_layers, dim)
    pooler : ndarray of shape (dim,) or None
    """
    if how == "max":
        return summaries.max(axis=0), None if poolers is None else poolers.max(axis=0)
    weights = n_tokens.astype(np.float64) if how == "weighted" else np.ones(len(n_tokens))
    weights = (weights / weights.sum()).astype(np.float32)
    summary = np.tensordot(weights, summaries, axes=1)
    pooler = None if poolers is None else weights @ poolers
    return summary, pooler
