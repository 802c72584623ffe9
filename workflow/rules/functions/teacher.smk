# Input functions and specs of the rules in workflow/rules/teacher.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def teacher_model_files():
    """A local teacher model the workflow builds itself (builtin:tiny in the demo) is an input."""
    teacher = config["teacher"]
    return model_files(teacher) if teacher["backend"] == "transformers" else []


def get_teacher_spec():
    """The teacher's identity, cache and price table (a new model or sampling reruns it)."""
    return specs.dumps(specs.build("teacher_initial", config))


def get_teacher_improve_input(wildcards):
    """The method's sources and, for a sequential chain, the file of its first turn's strategy
    when that strategy is in the grid (its first turn is then a cache hit, never paid twice)."""
    files = {"sources": f"results/data/sources/{wildcards.method}.csv", "prompts": PROMPTS}
    if strategies.kind(wildcards.strategy) == strategies.SEQUENTIAL:
        first = strategies.first_turn(wildcards.strategy)
        if first in grid.teacher_strategies(config, wildcards.method):
            files["first_turn"] = f"results/teacher/{wildcards.method}/{first}.jsonl"
    return files


def get_cost_input(wildcards):
    """The split, and the improve_human sources when improve_human is in the grid."""
    files = {"train": TRAIN_CSV, "test": TEST_CSV, "prompts": PROMPTS}
    if config["distillation"]["methods"].get("improve_human"):
        files["human"] = "results/data/sources/improve_human.csv"
    if grid.scorers(config):
        files["scorer_train"] = SCORER_TRAIN_CSV
    if cost_study_scorers.paid_scorers(config):  # OpenAI scorers of scoring.study_protocol
        files["study_balanced"] = study_file(study_grid.BALANCED_FILE)
    return files


def get_cost_human_arg(wildcards, input):
    """``--improve-human-sources <file>`` when improve_human is in the grid, else nothing."""
    return f"--improve-human-sources {shlex.quote(input.human)}" if "human" in input.keys() else ""


def get_cost_scorer_train_arg(wildcards, input):
    """``--scorer-train <file>`` when a scorer is in the grid, else nothing."""
    if "scorer_train" not in input.keys():
        return ""
    return f"--scorer-train {shlex.quote(input.scorer_train)}"


def get_cost_study_balanced_arg(wildcards, input):
    """``--study-balanced <file>`` when an OpenAI scorer is in scoring.study_protocol."""
    if "study_balanced" not in input.keys():
        return ""
    return f"--study-balanced {shlex.quote(input.study_balanced)}"
