"""Evaluation: students answer the test dialogues, judges compare answers pairwise, statistics.

Modules (one job each): ``generate`` (batched answers of base and fine-tuned students; the
teacher's answers come from the teacher stage), ``judge`` (position-debiased pairwise judging),
``offline_judge`` (a scorer trained on the dataset's human ratings, so the workflow evaluates
without any API key), ``stats`` (win rates, intervals, length control, agreement), ``tables``
``figures``, ``examples`` and ``lengths`` (results for the Snakemake report), ``report_html``
(the report rule's front end). The judge registry is :mod:`empathy_distill.core.judges`.
"""
