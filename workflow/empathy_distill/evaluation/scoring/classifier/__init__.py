"""Offline feature classifiers predicting the human 1-3 empathy rating (scorer kind
``classifier``), after the companion study (Xie, Zhang, Zhang, Liu, IEEE BigData 2024,
arXiv:2412.20264), which approximates LLM empathy scoring with explainable features.

Modules (one job each): ``features`` (the study's text, embeddings, subfactor scores read from
an LLM subfactor scorer's files), ``models`` (the study's four classifiers, feature selection,
choice by cross-validation on train only), ``protocol`` (the study's balanced 80/20 split),
``train`` (rule ``train_classifier_scorer``), ``apply`` (the ``score_answers`` branch of the
kind). This module holds only paths: Snakemake's rule files import it.
"""

#: The fitted scorer (rule train_classifier_scorer).
MODEL_FILE = "results/scorers/{scorer}/model.joblib"
#: Scores of the dataset's own responses of a split (the shared contract of the scoring helpers).
RESPONSE_SCORES = "results/scores/{scorer}/responses_{split}.jsonl"
TABLE = "results/tables/classifier_scores_{scorer}.csv"
IMPORTANCE = "results/tables/feature_importance_{scorer}.csv"
FIGURE = "results/figures/feature_importance_{scorer}.png"
