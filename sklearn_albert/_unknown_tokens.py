"""A tokenizer that cannot read the texts: most of their tokens are its unknown token.

Under transformers 5, ``BertTokenizerFast(vocab_file="vocab.txt")`` (the way Chinese
ALBERT vocabularies were usually loaded) silently ignores ``vocab_file``, whose name is now
``vocab``, and keeps a vocabulary of its five special tokens: every word becomes
``[UNK]``, and a checkpoint saved with that tokenizer embeds every text alike. A model
given texts in a script its vocabulary lacks does much the same. ``fit`` counts the
unknown ids among the ids the engine produced anyway (no second tokenization) and warns.
"""

import warnings

#: Share of unknown tokens, among the texts ``fit`` saw, above which it warns.
UNKNOWN_SHARE_LIMIT = 0.5

#: A vocabulary this small holds little beyond special tokens: the tokenizer was built
#: without its vocabulary, not given texts of another language.
TINY_VOCABULARY = 100


#: SentencePiece's word-boundary marker: alone, a token that stands for no character of the
#: text (``"▁"`` before an unknown run: ``"宾馆"`` is ``["▁", "<unk>"]``), so not counted.
WORD_BOUNDARY = "\u2581"


class UnknownTokenTally:
    """Tokens seen and how many of them are the tokenizer's unknown token.

    A bare word-boundary marker (SentencePiece's ``"▁"``) is not counted as a token:
    ALBERT's tokenizer writes one before each run of unknown characters, and counting it
    would make a text the vocabulary cannot read look half known.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Its ``unk_token_id`` is counted (nothing is when it has none).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.unknown_id = getattr(tokenizer, "unk_token_id", None)
        boundary_id = None
        if self.unknown_id is not None:
            boundary_id = tokenizer.convert_tokens_to_ids(WORD_BOUNDARY)
        self.boundary_id = None if boundary_id == self.unknown_id else boundary_id
        self.n_tokens = 0
        self.n_unknown = 0

    def add(self, content):
        """Count the ids of some texts (without special tokens), as the engine tokenized them."""
        if self.unknown_id is None:
            return
        self.n_tokens += sum(map(len, content))
        self.n_unknown += sum(ids.count(self.unknown_id) for ids in content)
        if self.boundary_id is not None:
            self.n_tokens -= sum(ids.count(self.boundary_id) for ids in content)

    def warn_if_mostly_unknown(self, stacklevel=2):
        """Warn when more than :data:`UNKNOWN_SHARE_LIMIT` of the tokens counted are unknown."""
        if not self.n_tokens or self.n_unknown <= UNKNOWN_SHARE_LIMIT * self.n_tokens:
            return
        tokenizer = self.tokenizer
        name = type(tokenizer).__name__
        size = len(tokenizer)
        if size < TINY_VOCABULARY:
            cause = (
                f"its vocabulary holds only {size} tokens, so it was built without its "
                "vocabulary file. Under transformers 5, BertTokenizer(vocab_file=...) and "
                "BertTokenizerFast(vocab_file=...) ignore vocab_file (the argument is now "
                "`vocab`): build the tokenizer with BertTokenizer.from_pretrained(folder "
                "holding vocab.txt) or BertTokenizer(vocab='vocab.txt'), check that "
                "len(tokenizer) is the vocabulary's size (21128 for Chinese ALBERT), and "
                "save_pretrained it into the checkpoint folder (or leave only vocab.txt "
                "there: sklearn_albert then loads it with BertTokenizer)."
            )
        else:
            cause = (
                f"its {size}-token vocabulary does not cover these texts (another language "
                "or script?). Use a checkpoint whose tokenizer was trained on such texts."
            )
        warnings.warn(
            f"{self.n_unknown} of {self.n_tokens} tokens ({self.n_unknown / self.n_tokens:.0%})"
            f" in the texts fit saw are the unknown token {tokenizer.unk_token!r} of the "
            f"tokenizer ({name}): their embeddings carry little of the texts. {cause}",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
