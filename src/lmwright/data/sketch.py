"""A bag-of-words sketch of a text, kept per served request instead of the text itself.

What it keeps: counts of hashed buckets. The text is lowercased and split into words of two or more word
characters (punctuation and one-letter words are dropped); every word and every pair of adjacent words (bigram)
is hashed (scikit-learn's `HashingVectorizer`: MurmurHash3, seed 0, stable across processes, machines and
releases) into one of 2**18 buckets, and the sketch is the sorted list of [bucket, count] pairs. Two texts about
the same things give overlapping sketches, which is all the drift tests (`lmwright.ops.drift`) need.

What it does not keep: the text, its words as strings, and word order beyond adjacent pairs. No vocabulary is
stored, so a sketch cannot be read back into words.

It is a sketch, not anonymisation. Anyone who holds a sketch and guesses a word list can hash each guess and see
whether its bucket is set: a name, an e-mail address's parts or a rare phrase can be *confirmed*, though not
discovered (a wrong guess hits a set bucket only by collision: a prompt of a hundred words sets some 200 of the
2**18 buckets, so about one wrong guess in 1,300 is "confirmed"). Keep sketches under the same retention and access rules as other request
metadata.

The vectorizer's settings below are part of the stored format: change one and old sketches no longer compare
with new ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import HashingVectorizer

N_FEATURES = 2**18

_VECTORIZER: HashingVectorizer | None = None


def _vectorizer() -> HashingVectorizer:
    """The one vectorizer, built on first use: importing scikit-learn costs about a second, paid only here."""
    global _VECTORIZER
    if _VECTORIZER is None:
        from sklearn.feature_extraction.text import HashingVectorizer

        _VECTORIZER = HashingVectorizer(n_features=N_FEATURES, ngram_range=(1, 2), alternate_sign=False,
                                        norm=None, lowercase=True)
    return _VECTORIZER


def sketch(text: str) -> list[list[int]]:
    """The sorted [[bucket, count], ...] of the text's hashed words and word bigrams; [] for a text without words."""
    row = _vectorizer().transform([text])
    row.sum_duplicates()  # canonical: each bucket once, indices sorted
    order = np.argsort(row.indices, kind="stable")
    return [[int(b), int(c)] for b, c in zip(row.indices[order], row.data[order], strict=True)]


def sketch_matrix(sketches: list[list[list[int]]]) -> csr_matrix:
    """Stack sketches into a (len(sketches), 2**18) sparse matrix of float counts, one row per sketch."""
    from scipy.sparse import csr_matrix

    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i, sk in enumerate(sketches):
        for pair in sk:
            bucket, count = pair
            if not 0 <= bucket < N_FEATURES:
                raise ValueError(f"sketch {i}: bucket {bucket} is outside [0, {N_FEATURES})")
            rows.append(i)
            cols.append(bucket)
            vals.append(float(count))
    # (data, (row, col)) sums repeated entries, so a hand-built sketch with a bucket twice still counts right
    return csr_matrix((np.asarray(vals, dtype=np.float64), (np.asarray(rows, dtype=np.int64),
                       np.asarray(cols, dtype=np.int64))), shape=(len(sketches), N_FEATURES))
