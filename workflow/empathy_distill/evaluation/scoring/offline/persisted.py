"""One way the offline models (the subfactor scorer, the MITI tagger) are stored: the fitted
object whole, with joblib, written atomically so a killed job leaves no half-written model."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ....core.atomic import atomic_write


class Persisted:
    """``save``/``load`` for a fitted model; ``load`` refuses a file holding another kind."""

    #: What the model is, for the refusal: "a MITI tagger".
    KIND: ClassVar[str]

    def save(self, path: str | Path) -> None:
        import joblib

        with atomic_write(path, "wb") as handle:
            joblib.dump(self, handle)

    @classmethod
    def load(cls, path: str | Path):
        import joblib

        loaded = joblib.load(path)
        if not isinstance(loaded, cls):
            raise TypeError(f"{path}: not {cls.KIND}")
        return loaded
