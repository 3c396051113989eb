"""Build a small random Chinese ALBERT in the albert_chinese_* layout: AlbertModel + BERT vocab.txt.

The published ``albert_chinese_*`` checkpoints ship an AlbertModel with the 21,128-token
BERT-Chinese WordPiece ``vocab.txt`` and no SentencePiece model. ``../shared`` holds that
vocabulary but no Chinese weights, so tests build random ones of the same layout.
"""

import shutil
from pathlib import Path


def build_tiny_chinese_albert(folder, vocab_dir, *, seed=0, max_position_embeddings=128):
    """Copy ``vocab.txt`` from ``vocab_dir`` beside a random tiny AlbertModel in ``folder``."""
    import torch
    from transformers import AlbertConfig, AlbertModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(vocab_dir) / "vocab.txt", folder / "vocab.txt")
    vocab_size = (folder / "vocab.txt").read_text(encoding="utf-8").count("\n")
    config = AlbertConfig(
        vocab_size=vocab_size,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=max_position_embeddings,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    AlbertModel(config).save_pretrained(folder)
    return folder
