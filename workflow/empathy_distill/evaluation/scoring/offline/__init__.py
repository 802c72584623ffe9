"""Offline stand-ins for two of the companion study's annotations (Xie et al., arXiv:2412.20264),
learnt from its published data: gpt-4o-mini's 15 v2 subfactor scores (a ``kind: subfactors``
scorer with ``backend: offline``) and the 15 MITI codes (the MITI tagger, which gives the
classifiers their ``miti`` features). Both learn only from responses to dialogues of the
paper's train split and report their agreement on held-out train dialogues.

Modules: ``crossfit`` (dialogue-grouped folds, cross-fitted models), ``study_rows`` (the
study's responses with their labels), ``subfactors`` / ``subfactors_job`` (the scorer, rule
``train_offline_subfactors``), ``miti`` / ``miti_job`` (the tagger, rule ``train_miti_tagger``).
This module holds only paths: Snakemake's rule files import it.
"""

#: The fitted offline subfactor scorer and its agreement with gpt-4o-mini.
SUBFACTOR_MODEL = "results/scorers/{scorer}/model.joblib"
SUBFACTOR_AGREEMENT = "results/tables/offline_subfactor_agreement_{scorer}.csv"
SUBFACTOR_BENCHMARK = "results/benchmarks/scorers/{scorer}.tsv"
#: The fitted MITI tagger and its per-code F1 against the study's codes.
MITI_MODEL = "results/scorers/miti_tagger/model.joblib"
MITI_AGREEMENT = "results/tables/miti_tagger_agreement.csv"
MITI_BENCHMARK = "results/benchmarks/scorers/miti_tagger.tsv"
