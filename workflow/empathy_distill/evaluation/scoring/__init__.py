"""Empathy scores of single answers, after the companion study of Xie, Zhang, Zhang, Liu,
"Scoring with Large Language Models: A Study on Measuring Empathy of Responses in Dialogues"
(IEEE BigData 2024, arXiv:2412.20264): a second evaluation axis that says *which dimension* of
empathy (cognitive, affective, compassionate) an answer set has, not only which answer wins.

Modules (one job each): ``prompts`` (the study's texts, filled byte-identically), ``parse``
(a reply to scores, or invalid), ``score`` (the ``score_answers`` job: one answer set through
the LLM layer), ``table`` (the ``empathy_scores`` job: means and bootstrap intervals per answer
set and scorer). Scorers are configured under ``scoring`` (config.yaml).
"""
