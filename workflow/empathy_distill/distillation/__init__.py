"""Distillation data: the teacher LLM's answers (:mod:`.teacher`, its requests
:mod:`.requests`, its command line :mod:`.teacher_cli`), the training sets built
from them and from the dataset (:mod:`.sets`), their LLaMA-Factory formats
(:mod:`.formats`) and the train/test leakage guard (:mod:`.leakage`); :mod:`.build_sets` is
the command line of ``workflow/rules/datasets.smk``."""
