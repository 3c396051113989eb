"""Build small offline checkpoints: a tiny ALBERT with a real SentencePiece tokenizer."""

import json
import random
from pathlib import Path

WORDS = (
    "the a an film movie story actor actress plot scene music score script director "
    "good great fine superb moving funny clever bright warm lovely brilliant charming "
    "bad awful dull boring weak flat poor silly messy tedious bland clumsy painful "
    "is was seems feels looks and but or not very quite rather too so really "
    "i you we they it this that these those my your our their one two three "
    "day night city river house road garden window door table chair book letter "
    "run walk talk sing dance write read watch love hate like enjoy miss leave"
).split()


def generated_sentences(n, seed=0):
    """Short English-like sentences from a fixed word list."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14))) for _ in range(n)]


def build_tiny_albert(folder, *, seed=0, max_position_embeddings=64):
    """Train a SentencePiece model on generated text and save a random tiny ALBERT."""
    import sentencepiece as spm
    import torch
    from transformers import AlbertConfig, AlbertModel, AlbertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    sentences = generated_sentences(2000, seed=seed) + ["Hello, World! 3.14 café naïve"] * 5
    corpus.write_text("\n".join(sentences), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "spiece"),
        vocab_size=300,
        hard_vocab_limit=False,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        pad_piece="<pad>",
        unk_piece="<unk>",
        bos_piece="[CLS]",
        eos_piece="[SEP]",
        user_defined_symbols=["[MASK]"],
        minloglevel=2,
    )
    corpus.unlink()
    (folder / "spiece.vocab").unlink()
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {"tokenizer_class": "AlbertTokenizer", "model_max_length": max_position_embeddings}
        )
    )
    tokenizer = AlbertTokenizer.from_pretrained(folder)
    config = AlbertConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=max_position_embeddings,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    AlbertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_random_albert_base(folder, shared_model_dir, *, seed=0):
    """The real ALBERT-base architecture and tokenizer with seeded random weights."""
    import shutil

    import torch
    from transformers import AlbertConfig, AlbertModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "spiece.model", "special_tokens_map.json"):
        shutil.copy(Path(shared_model_dir) / name, folder / name)
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "AlbertTokenizer",
                "model_max_length": 512,
                "do_lower_case": True,
                "keep_accents": False,
            }
        )
    )
    torch.manual_seed(seed)
    AlbertModel(AlbertConfig.from_pretrained(folder)).save_pretrained(folder)
    return folder


def mean_pooling_sentence_transformer(folder):
    """sentence-transformers' own encoder over ``folder``, with mean pooling, on CPU."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    transformer = Transformer(str(folder))
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")
