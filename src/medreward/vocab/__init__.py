"""Label vocabularies: closed label sets with synonyms, member drugs and combination products
that normalise raw model labels to class ids (see :mod:`medreward.vocab.vocabulary`).

Packaged: ``toxicology`` (the 14 substance classes of the toxicology task).
"""

from .vocabulary import (
    VocabClass,
    Vocabulary,
    VocabularyError,
    available_vocabularies,
    load_vocabulary,
    term_key,
)

__all__ = [
    "VocabClass",
    "Vocabulary",
    "VocabularyError",
    "available_vocabularies",
    "load_vocabulary",
    "term_key",
]
