"""A bag-of-words sketch of a text, kept per served request instead of the text itself.

What it keeps: counts of hashed buckets. The text is lowercased and split into words of two or more word
characters (punctuation and one-letter words are dropped); every word and every pair of adjacent words (bigram)
is hashed (scikit-learn's `HashingVectorizer`: MurmurHash3, seed 0, stable across processes, machines and
releases) into one of 2**18 buckets, and the sketch is the sorted list of [bucket, count] pairs. Two texts about
the same things give overlapping sketches, which is all the drift tests (`lmwright.ops.drift`) need.

What it does not keep: the text, its words as strings, and word order beyond adjacent pairs. No vocabulary is
stored, so a sketch cannot be read back into words.

Keyed: with a `key` (the workspace's `.lmwright/sketch.key`, `Workspace.sketch_key`), each word and pair is first
replaced by its keyed BLAKE2b digest, so a sketch compares only with sketches made with the same key. Without the
key, someone who holds sketches cannot hash a guessed word list to *confirm* a name or a phrase (with it, they
can: a wrong guess hits a set bucket only by collision, about one in 1,300 for a prompt of a hundred words). It is
a sketch, not anonymisation: keep the key and the sketches under the same rules as other request metadata.

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

_VECTORIZERS: dict[bytes | None, HashingVectorizer] = {}


def _vectorizer(key: bytes | None = None) -> HashingVectorizer:
    """The vectorizer for a key, built on first use: importing scikit-learn costs about a second, paid only here."""
    if key not in _VECTORIZERS:
        import hashlib

        from sklearn.feature_extraction.text import HashingVectorizer

        plain = HashingVectorizer(n_features=N_FEATURES, ngram_range=(1, 2), alternate_sign=False, norm=None,
                                  lowercase=True)
        if key is None:
            _VECTORIZERS[key] = plain
        else:
            words = plain.build_analyzer()

            def keyed(text: str) -> list[str]:
                return [hashlib.blake2b(w.encode(), key=key[:64], digest_size=8).hexdigest() for w in words(text)]

            _VECTORIZERS[key] = HashingVectorizer(n_features=N_FEATURES, analyzer=keyed, alternate_sign=False,
                                                  norm=None)
    return _VECTORIZERS[key]


def sketch(text: str, key: bytes | None = None) -> list[list[int]]:
    """The sorted [[bucket, count], ...] of the text's hashed words and word bigrams (keyed with `key`); [] for a
    text without words."""
    row = _vectorizer(key).transform([text])
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
