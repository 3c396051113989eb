"""ALBERT and any Hugging Face encoder as scikit-learn transformers.

Importing this package is cheap: torch and transformers load when a model is first used.
"""

from ._cache import cache_info, clear_cache, set_cache_limit
from ._classifier import AlbertClassifier
from ._keywords import AlbertKeywordExtractor
from ._persistence import skops_trusted_types
from ._similarity import Match, cosine_similarity_matrix, most_similar, paired_cosine_similarity
from ._static import StaticEmbeddings
from ._tokens import TokenEmbeddings
from ._vectorizer import AlbertVectorizer

__version__ = "0.1.0"

__all__ = [
    "AlbertClassifier",
    "AlbertKeywordExtractor",
    "AlbertVectorizer",
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
