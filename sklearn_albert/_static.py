"""Static embeddings: the model's input embedding table, whole or looked up per word.

A static embedding is what a token means before any context is seen: row ``i`` of the
table ``model.get_input_embeddings().weight``. For ALBERT that table is factorised: it is
``vocab_size x embedding_size`` (128 for every published ALBERT), and the model maps it to
``hidden_size`` with ``model.encoder.embedding_hidden_mapping_in`` only after adding
position and token-type embeddings and a LayerNorm. BERT-family tables are already
``vocab_size x hidden_size``. Either way these vectors are not the rows of ``transform``
(contextual, from the chosen hidden layers) and live in their own space.
"""

from typing import NamedTuple

import numpy as np

from ._validation import validate_texts


class StaticEmbeddings(NamedTuple):
    """Rows of the input embedding table and the tokens or words they belong to.

    Attributes
    ----------
    vocabulary : list of str
        The token of each row (all of the tokenizer's vocabulary, in id order), or the
        words that were asked for. A table row no token maps to is named ``""``.
    vectors : ndarray of shape (len(vocabulary), embedding_size), float32
        The table rows, or for each word the mean of its pieces' rows.
    """

    vocabulary: list
    vectors: np.ndarray


def static_embeddings(loaded, words=None):
    """The input embedding table of a loaded checkpoint, or one vector per word.

    Parameters
    ----------
    loaded : LoadedModel
    words : iterable of str or None
        None for the whole table; otherwise words (or short phrases), each tokenized
        without special tokens and replaced by the mean of its pieces' rows.

    Returns
    -------
    StaticEmbeddings
    """
    table = loaded.model.get_input_embeddings().weight.detach().to("cpu", dtype=_float32())
    table = table.numpy()
    tokenizer = loaded.tokenizer
    if words is None:
        name_of = {index: token for token, index in tokenizer.get_vocab().items()}
        vocabulary = [name_of.get(index, "") for index in range(len(table))]
        return StaticEmbeddings(vocabulary, table.copy())
    if isinstance(words, str):
        raise ValueError(
            f"Got words={words!r}, a single string, but expected a list of words; "
            f"use words=[{words!r}]."
        )
    words = validate_texts(words, parameter="words")
    piece_ids = (
        tokenizer(words, add_special_tokens=False, verbose=False)["input_ids"] if words else []
    )
    vectors = np.empty((len(words), table.shape[1]), dtype=np.float32)
    for row, (word, ids) in enumerate(zip(words, piece_ids)):
        if not ids:
            raise ValueError(
                f"Got words[{row}]={word!r}, which the tokenizer turns into no tokens; "
                "pass words with at least one visible character."
            )
        vectors[row] = table[ids].mean(axis=0)
    return StaticEmbeddings(list(words), vectors)


def _float32():
    import torch

    return torch.float32
