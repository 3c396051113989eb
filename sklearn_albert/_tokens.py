"""Token-level embeddings: one vector per subword piece, or per word, with character offsets.

Tagging tasks (named entities, part of speech, span extraction) need a vector for every
token, not one per text. The forward pass is the engine's (``_engine.encode_token_states``):
the same model copy, precision, batching and out-of-memory backoff as ``transform``; only
what leaves the device differs (the chosen layers' token vectors instead of pooled
summaries). This module adds what only token vectors need: character offsets, words, and
the merging of a word's pieces.

Token vectors are never cached: they are large, and a tagging corpus is usually encoded once.
"""

import itertools
import re
from dataclasses import dataclass

import numpy as np

from ._engine import TOKENIZE_CHUNK, encode_token_states
from ._warnings import warn_at_caller

#: Valid values of ``word_aggregation``.
WORD_AGGREGATIONS = ("mean", "first", "last", "max")

# Scripts written without spaces, where every character is a word of its own: CJK
# symbols and punctuation, kana, CJK ideographs (with extension A and compatibility
# forms) and full-width forms.
_SINGLE_CHARACTER_WORD = re.compile(
    "[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
)


@dataclass(frozen=True, eq=False)
class TokenEmbeddings:
    """The token vectors of one text, as returned by ``AlbertVectorizer.transform_tokens``.

    Special tokens (``[CLS]``, ``[SEP]``) take part in the forward pass but are not
    listed: every row here covers a span of the input text.

    Attributes
    ----------
    tokens : list of str
        The subword pieces as the tokenizer names them (``"▁film"``, ``"##ing"``), or, with
        ``word_level=True``, the words as they appear in the text (``text[start:end]``).
    offsets : ndarray of shape (n_tokens, 2), int64
        Character ``[start, end)`` span of each token in the input text.
    embeddings : ndarray of shape (n_tokens, n_features), float32
        One vector per token from the vectorizer's ``layers``, combined by its
        ``layer_aggregation`` (``n_features`` is ``hidden_size_``, times the number of
        layers for ``"concat"``).
    truncated : bool
        Whether the text was longer than ``max_length_`` tokens; tokens past the limit
        are missing from ``tokens``, ``offsets`` and ``embeddings``.
    """

    tokens: list
    offsets: np.ndarray
    embeddings: np.ndarray
    truncated: bool

    def __len__(self):
        return len(self.tokens)


def transform_tokens(
    loaded, runner, settings, texts, *, word_level=False, word_aggregation="mean", warn=True
):
    """Token (or word) vectors of each text.

    Parameters
    ----------
    loaded : LoadedModel
    runner : callable
        The forward pass's module (``_engine.runner_for``).
    settings : EncodeSettings
        Its ``layers``, ``layer_aggregation``, ``normalize``, ``max_length`` and batch
        budgets apply.
    texts : list of str
        Validated texts.
    word_level : bool, default=False
        Merge the tokens of each word (see :func:`word_ids_from_offsets`) into one vector.
    word_aggregation : {"mean", "first", "last", "max"}, default="mean"
        How the pieces of a word combine when ``word_level=True``.
    warn : bool, default=True
        Warn how many texts were truncated (False when the user chose ``max_length``).

    Returns
    -------
    records : list of TokenEmbeddings
        One per text, in input order.
    """
    _check_options(word_level, word_aggregation)
    pieces = tokenize_with_offsets(loaded.tokenizer, texts)
    # The prompt's tokens (settings.prompt_ids) follow the leading special tokens.
    prefix = len(loaded.special_prefix) + len(settings.prompt_ids)
    suffix = len(loaded.special_suffix)
    vectors = [None] * len(texts)
    for batch, rows in encode_token_states(loaded, runner, [row.ids for row in pieces], settings):
        for index, states in zip(batch, rows):
            vectors[index] = states[prefix : len(states) - suffix]  # drop special and prompt tokens

    records = []
    for text, row, states in zip(texts, pieces, vectors):
        n_kept = len(states)
        tokens = loaded.tokenizer.convert_ids_to_tokens(row.ids[:n_kept])
        offsets = row.offsets[:n_kept]
        if word_level:
            tokens, offsets, states = merge_words(
                text, offsets, row.word_ids[:n_kept], states, word_aggregation
            )
        if settings.normalize:
            states = states / np.maximum(
                np.linalg.norm(states, axis=1, keepdims=True), np.finfo(np.float32).tiny
            )
        records.append(
            TokenEmbeddings(
                tokens=list(tokens),
                offsets=np.asarray(offsets, dtype=np.int64).reshape(-1, 2),
                embeddings=np.ascontiguousarray(states, dtype=np.float32),
                truncated=n_kept < len(row.ids),
            )
        )
    if warn:
        _warn_truncated(
            sum(record.truncated for record in records), len(texts), settings.max_length
        )
    return records


@dataclass(frozen=True, eq=False)
class _TokenizedText:
    ids: list
    offsets: list
    word_ids: list


def tokenize_with_offsets(tokenizer, texts):
    """Content token ids, character offsets and word ids of each text.

    Like ``_engine.tokenize`` (no special tokens, no truncation), plus the character
    offsets that only a tokenizer backed by the ``tokenizers`` library reports, and the
    word of each token (see :func:`word_ids_from_offsets`).

    Returns
    -------
    tokenized : list of _TokenizedText
    """
    tokenized = []
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        chunk = texts[start : start + TOKENIZE_CHUNK]
        try:
            encoding = tokenizer(
                chunk,
                add_special_tokens=False,
                truncation=False,
                return_offsets_mapping=True,
                return_attention_mask=False,
                return_token_type_ids=False,
                verbose=False,
            )
        except NotImplementedError:
            raise ValueError(
                f"transform_tokens needs character offsets, which {type(tokenizer).__name__} "
                "does not report. Use a checkpoint whose tokenizer is backed by the "
                "`tokenizers` library (one with a tokenizer.json)."
            ) from None
        for position, text in enumerate(chunk):
            offsets = [tuple(span) for span in encoding["offset_mapping"][position]]
            words = word_ids_from_offsets(text, offsets)
            tokenized.append(_TokenizedText(encoding["input_ids"][position], offsets, words))
    return tokenized


def word_ids_from_offsets(text, offsets):
    """The word each token belongs to, from character offsets alone.

    A word is a maximal run of characters without whitespace, except in scripts written
    without spaces (Chinese, Japanese, their full-width punctuation), where every
    character is a word. The rule does not depend on the tokenizer, so the same text has
    the same words under ALBERT, BERT or any other checkpoint, and text pre-split into
    tokens (CoNLL-style NER data) and joined with spaces gets one word per token.

    Parameters
    ----------
    text : str
    offsets : list of (int, int)
        Character ``[start, end)`` of each token, in order.

    Returns
    -------
    word_ids : list of int
        Non-decreasing, starting at 0.
    """
    ids, word, previous_end = [], -1, None
    for start, end in offsets:
        if previous_end is None or start > previous_end:
            word += 1  # the first token, or whitespace (or dropped characters) before it
        elif start == previous_end and (
            _is_single_character_word(text, start)
            or _is_single_character_word(text, previous_end - 1)
        ):
            word += 1  # touching, but one side is Chinese or Japanese
        # Otherwise the token overlaps the previous one (SentencePiece's bare "▁" points at
        # the character it precedes) or continues it: same word.
        ids.append(word)
        previous_end = end if previous_end is None else max(end, previous_end)
    return ids


def _is_single_character_word(text, position):
    return 0 <= position < len(text) and _SINGLE_CHARACTER_WORD.match(text, position) is not None


def merge_words(text, offsets, word_ids, states, how):
    """Aggregate consecutive tokens that share a word id into one row per word.

    Parameters
    ----------
    text : str
    offsets : list of (int, int)
    word_ids : list of int
    states : ndarray of shape (n_pieces, n_features)
    how : {"mean", "first", "last", "max"}

    Returns
    -------
    words : list of str
    word_offsets : list of (int, int)
    word_states : ndarray of shape (n_words, n_features), float32
    """
    groups, bounds = [], []
    for position, word in enumerate(word_ids):
        if position == 0 or word != word_ids[position - 1]:
            bounds.append(position)
            groups.append(word)
    bounds.append(len(word_ids))
    words, word_offsets, rows = [], [], []
    for first, stop in itertools.pairwise(bounds):
        start = min(span[0] for span in offsets[first:stop])
        end = max(span[1] for span in offsets[first:stop])
        words.append(text[start:end])
        word_offsets.append((start, end))
        piece_states = states[first:stop]
        if how == "mean":
            rows.append(piece_states.mean(axis=0))
        elif how == "first":
            rows.append(piece_states[0])
        elif how == "last":
            rows.append(piece_states[-1])
        else:
            rows.append(piece_states.max(axis=0))
    word_states = np.stack(rows) if rows else np.empty((0, states.shape[1]), np.float32)
    return words, word_offsets, word_states.astype(np.float32, copy=False)


def _check_options(word_level, word_aggregation):
    if not isinstance(word_level, (bool, np.bool_)):
        raise ValueError(f"Got word_level={word_level!r} but expected True or False.")
    if word_aggregation not in WORD_AGGREGATIONS:
        raise ValueError(
            f"Got word_aggregation={word_aggregation!r} but expected one of {WORD_AGGREGATIONS}."
        )


def _warn_truncated(n_truncated, n_texts, max_length):
    if n_truncated:
        warn_at_caller(
            f"{n_truncated} of {n_texts} texts are longer than max_length_={max_length} "
            "tokens and were truncated; their records have truncated=True and lack the "
            "tokens past the limit."
        )
