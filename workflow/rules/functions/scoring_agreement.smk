# Input functions and specs of the rules in workflow/rules/scoring_agreement.smk, which includes
# this file first. Functions that several rules files use are in workflow/rules/common.smk.

def get_score_responses_spec(wildcards):
    """The scorer's identity alone (the dataset's responses do not depend on the grid)."""
    return specs.dumps(specs.build("score_responses", config, wildcards.scorer))


def llm_scorer_pattern():
    """Regex of the scorer names score_responses writes files for (kind rating / subfactors);
    one that matches nothing when there is none."""
    kinds = scored_responses.LLM_KINDS
    names = [n for n, s in config["scoring"]["scorers"].items() if s["kind"] in kinds]
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def get_score_responses_input(wildcards):
    """The split table, the scoring prompts and what the scorer's model needs."""
    files = {
        "split": TEST_CSV if wildcards.split == "test" else SCORER_TRAIN_CSV,
        "prompts": config["scoring"]["prompts"],
    }
    return {**files, **get_scorer_model_files(wildcards)}


def agreement_inputs(wildcards=None):
    """responses_test.jsonl of every scorer of the grid, whatever rule writes it."""
    return [scored_responses.responses_path(name, "test") for name in grid.scorers(config)]


def get_empathy_change_scores(wildcards):
    """The scores files of the scorer's base and trained answer sets (the bootstrap reads them)."""
    spec = specs.build("empathy_scores", config)
    return [
        entry["path"]
        for entry in scoring_specs.score_manifest(spec)
        if entry["scorer"] == wildcards.scorer and entry["answers"] != grid.TEACHER_TAG
    ]


def get_empathy_change_spec(wildcards):
    return specs.dumps(specs.build("figure_empathy_change", config, wildcards.scorer))
