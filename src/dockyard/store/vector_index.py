"""One vector store's index on disk: usearch (HNSW, cosine), keyed by chunk id, under `<home>/vector_stores/<id>/`.

Each change is written to a temporary file and renamed over `index.usearch`, so a crash leaves the
old index or the new one, never half of one. The chunk texts live in the database
(`vector_store_chunks`), whose integer ids are the index's keys: an id in the index without a row
(a crash between the two writes) is skipped at search time, and a file removed from the store has
its keys removed from the index.

One lock per index serializes writers; searches read a loaded copy under the same lock, which is
brief (HNSW search over a few thousand vectors is well under a millisecond).
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported on first use: most dockyards never search, and numpy is slow to import
    import numpy as np
    from usearch.index import Index

INDEX_FILE = "index.usearch"


class DimensionMismatch(ValueError):
    """Vectors of another length than the index holds (the embedding deployment was changed)."""


class VectorIndex:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._index: Index | None = None
        self._loaded = False

    @property
    def path(self) -> Path:
        return self.folder / INDEX_FILE

    def _load(self) -> Index | None:
        if not self._loaded:
            from usearch.index import Index

            self._index = Index.restore(str(self.path)) if self.path.exists() else None
            self._loaded = True
        return self._index

    def add(self, keys: Sequence[int], vectors: Sequence[Sequence[float]]) -> None:
        if not keys:
            return
        import numpy as np
        from usearch.index import Index

        array = _normalized(vectors)
        with self._lock:
            index = self._load()
            if index is None:
                index = Index(ndim=array.shape[1], metric="cos", dtype="f32")
            elif index.ndim != array.shape[1]:
                raise DimensionMismatch(f"the index holds {index.ndim}-dimensional vectors, not {array.shape[1]}")
            index.add(np.asarray(keys, dtype=np.uint64), array)
            self._save(index)

    def remove(self, keys: Sequence[int]) -> None:
        import numpy as np

        with self._lock:
            index = self._load()
            if index is None or not keys:
                return
            index.remove(np.asarray(keys, dtype=np.uint64))
            self._save(index)

    def search(self, vector: Sequence[float], count: int) -> list[tuple[int, float]]:
        """The `count` nearest keys with their cosine similarity (1 is the same direction)."""
        query = _normalized([vector])[0]
        with self._lock:
            index = self._load()
            if index is None or len(index) == 0:
                return []
            if index.ndim != query.shape[0]:
                raise DimensionMismatch(f"the index holds {index.ndim}-dimensional vectors, not {query.shape[0]}")
            matches = index.search(query, min(count, len(index)))
        return [(int(key), 1.0 - float(distance)) for key, distance in zip(matches.keys, matches.distances,
                                                                             strict=True)]

    def __len__(self) -> int:
        with self._lock:
            index = self._load()
            return 0 if index is None else len(index)

    def drop(self) -> None:
        with self._lock:
            self._index = None
            self._loaded = True
            shutil.rmtree(self.folder, ignore_errors=True)

    def _save(self, index: Index) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.folder / f".{INDEX_FILE}.{secrets.token_hex(4)}.tmp"
        try:
            index.save(str(tmp))
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self._index = index


def _normalized(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    import numpy as np

    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] == 0 or not np.isfinite(array).all():
        raise ValueError("embeddings must be non-empty lists of finite numbers, all of one length")
    return array
