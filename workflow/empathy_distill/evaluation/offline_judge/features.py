"""Features of the offline judge: the dataset's ratings in long form, rater debiasing, and the
sentence-embedding features of a (context, response) pair.

Why these features (small on purpose; the ratings are single noisy judgments): ``response`` is
[e_resp, log words]; ``response_lexical`` is [e_resp, surface cues of empathy (``lexical.py``)];
``context`` is [e_resp, e_ctx*e_resp, cos, log words], the InferSent-style pair features of
Conneau et al. (2017) minus e_ctx, which is constant within a dialogue and so cannot order its
responses. Every rater of the dataset rated one responder only, so a rater's leniency is
measured against the mean of the responder they rated (``rater_debiased``); centring raters on
the global mean would also erase the differences between authors, which are real signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...core.errors import DatasetError
from ..embeddings import Embedder
from ..lexical import lexical_features

RESPONDERS = ("human", "chatgpt_empathy", "llama_empathy", "gemini_empathy", "mixtral_empathy")
FEATURE_SETS = ("response", "response_lexical", "context")
RATER_SHRINK = 5.0  # pseudo-ratings at the responder's mean added to each rater's mean


def context_text(situation: str, utterance: str) -> str:
    return f"Context: {situation} Speaker: {utterance}"


def long_ratings(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (dialogue, responder): dialog_id, context, response, rating, annotator."""
    parts = []
    for responder in RESPONDERS:
        columns = [f"response_{responder}", f"rating_{responder}", f"annotator_{responder}"]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DatasetError(f"split table lacks column(s) {', '.join(missing)}")
        parts.append(
            pd.DataFrame(
                {
                    "dialog_id": frame["dialog_id"].astype(str).values,
                    "context": [
                        context_text(str(s), str(u))
                        for s, u in zip(frame["situation"], frame["speaker_uttr"], strict=True)
                    ],
                    "response": frame[columns[0]].fillna("").astype(str).values,
                    "rating": pd.to_numeric(frame[columns[1]]).astype(float).values,
                    "annotator": frame[columns[2]].astype(str).values,
                    "responder": responder,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def rater_debiased(rows: pd.DataFrame) -> np.ndarray:
    """Ratings minus each rater's shrunk leniency, measured within the responder they rated.

    offset(rater) = (sum + k * m_resp) / (count + k) - m_resp, with m_resp the mean rating of
    the rater's responder on these rows; the author means are kept.
    """
    author_mean = rows.groupby("responder")["rating"].transform("mean")
    by_rater = rows.groupby("annotator")["rating"]
    total, count = by_rater.transform("sum"), by_rater.transform("count")
    shrunk = (total + RATER_SHRINK * author_mean) / (count + RATER_SHRINK)
    return (rows["rating"] - shrunk + author_mean).to_numpy(dtype=float)


@dataclass
class Embedded:
    rows: pd.DataFrame
    ctx: np.ndarray
    resp: np.ndarray
    lexical: np.ndarray  # lexical_features(responses)


def featurize(data: Embedded, features: str) -> np.ndarray:
    length = data.lexical[:, :1]  # log words
    if features == "response":
        return np.hstack([data.resp, length])
    if features == "response_lexical":
        return np.hstack([data.resp, data.lexical])
    if features == "context":
        product = data.ctx * data.resp
        return np.hstack([data.resp, product, product.sum(axis=1, keepdims=True), length])
    raise ValueError(f"unknown feature set {features!r} (have {FEATURE_SETS})")


def embed_rows(rows: pd.DataFrame, embedder: Embedder) -> Embedded:
    contexts = rows["context"].tolist()
    unique_ctx = list(dict.fromkeys(contexts))
    ctx_vectors = embedder.encode(unique_ctx)
    index = {c: i for i, c in enumerate(unique_ctx)}
    ctx = ctx_vectors[[index[c] for c in contexts]]
    resp = embedder.encode(rows["response"].tolist())
    lexical = lexical_features(rows["response"].tolist())
    return Embedded(rows.reset_index(drop=True), ctx, resp, lexical)


def subset(data: Embedded, mask: np.ndarray) -> Embedded:
    return Embedded(
        data.rows[mask].reset_index(drop=True), data.ctx[mask], data.resp[mask], data.lexical[mask]
    )
