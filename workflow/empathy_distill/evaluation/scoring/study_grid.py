"""The grid and files of rule ``scoring_study_reproduction`` (names only, no sklearn: the
Snakefile and the job specs import it)."""

SUBFACTORS, MITI, EMBEDDING = "subfactors", "miti", "embedding"
#: The study's four feature families (embedding: the offline MiniLM, not text-embedding-3-small).
FEATURE_SETS = (SUBFACTORS, MITI, f"{SUBFACTORS}+{MITI}", EMBEDDING)
#: The study's five classifiers (study_reproduction.MODELS builds them).
MODEL_NAMES = ("lr", "svc", "tree", "rf", "mlp")
SELECTIONS = ("none", "kbest", "rfe")
#: best_test: the study's way (k of the best test accuracy); cv: k by 5-fold CV on the 80%.
K_CHOICES = ("best_test", "cv")

#: The study's balanced set (data/scoring_study.BALANCED; named here without pandas).
BALANCED_FILE = "unified_balanced_dataset.csv"

TABLE = "results/tables/scoring_study_reproduction.csv"
BY_K = "results/tables/scoring_study_reproduction_by_k.csv"
FIGURE = "results/figures/scoring_study_reproduction.png"
BENCHMARK = "results/benchmarks/scoring_study_reproduction.tsv"
