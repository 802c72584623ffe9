"""Data stage: download and validate the dataset (:mod:`.dataset`), split it by dialogue
(:mod:`.split`); :mod:`.commands` is the command line the rules of
``workflow/rules/data.smk`` call."""
