"""empathy-distill: distilling empathy from large language models into small ones.

Reproduces "Distilling Empathy from Large Language Models" (Xie, Zhang, Zhang, Liu; SIGDIAL 2025;
arXiv:2507.08151) on the dataset of Welivita & Pu (2024), "Are Large Language Models More
Empathetic than Humans?" (arXiv:2406.05063). All workflow logic lives in this package so that
every Snakemake rule is a thin call that is also runnable and testable on its own.
"""

from pathlib import Path

__version__ = "0.1.0"

#: Repository root (``workflow/empathy_distill/`` -> two levels up).
REPO_ROOT = Path(__file__).resolve().parents[2]
