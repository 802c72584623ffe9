"""The offline judge: a response scorer learnt from the dataset's human ratings (train split).

Why: the workflow must be runnable and evaluable with no API key. Welivita & Pu (2024) rated
every one of the 5 responses per dialogue 1-3 (one crowd rater each); a regression from sentence
embeddings of (context, response) to that rating gives a score per response, and a pair is
judged by the higher score, a tie when the scores differ by less than ``judges.<name>.margin``.
Only TRAIN rows ever reach fitting or model selection.

Modules: :mod:`.features` (ratings, rater debiasing, embedding features), :mod:`.model`
(candidates, fitting, calibration, selection, the saved ``OfflineScorer``), :mod:`.evaluate`
(agreement with the human ratings), :mod:`.cli` (rule ``train_offline_judge``). What was
measured and tried: ``docs/offline_judge.md``.
"""

# Models saved before this package was split pickled PairwiseRanker under this package's name
# (empathy_distill.evaluation.offline_judge.PairwiseRanker): it stays importable here so they load.
from .model import OfflineScorer, PairwiseRanker

__all__ = ["OfflineScorer", "PairwiseRanker"]
