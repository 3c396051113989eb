"""ALBERT and any Hugging Face encoder as scikit-learn transformers.

Importing this package is cheap: torch and transformers load when a model is first used.
"""

from ._cache import EmbeddingCacheWarning, cache_info, clear_embedding_cache, set_cache_limit
from ._classifier import AlbertClassifier
from ._keywords import AlbertKeywordExtractor
from ._persistence import skops_trusted_types
from ._similarity import Match, cosine_similarity_matrix, most_similar, paired_cosine_similarity
from ._static import StaticEmbeddings
from ._tokens import TokenEmbeddings
from ._vectorizer import AlbertVectorizer

__version__ = "0.1.0"


def clear_cache(*, models=True):
    """Empty the in-memory embedding cache and, by default, the shared model registry.

    Parameters
    ----------
    models : bool, default=True
        Also forget loaded checkpoints shared between estimator clones. Estimators that
        still hold one keep it; others reload on their next ``fit`` or ``transform``.

    Notes
    -----
    An on-disk cache lives in the folder given as ``embedding_cache``; delete that folder
    to clear it.
    """
    clear_embedding_cache()
    if models:
        from ._loading import clear_model_registry

        clear_model_registry()


__all__ = [
    "AlbertClassifier",
    "AlbertKeywordExtractor",
    "AlbertVectorizer",
    "EmbeddingCacheWarning",
    "Match",
    "StaticEmbeddings",
    "TokenEmbeddings",
    "cache_info",
    "clear_cache",
    "cosine_similarity_matrix",
    "most_similar",
    "paired_cosine_similarity",
    "set_cache_limit",
    "skops_trusted_types",
    "__version__",
]
