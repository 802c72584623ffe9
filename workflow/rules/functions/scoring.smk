# Input functions and specs of the rules in workflow/rules/scoring.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def scorer_key_envvars():
    """API-key variables of the grid's scorers and those of scoring.study_protocol that are
    set (see llm_key_envvars)."""
    defined = config["scoring"]["scorers"]
    names = dict.fromkeys([*grid.scorers(config), *study_protocol.scorers(config)])
    return llm_key_envvars([defined[name] for name in names])


#: The answer sets every score_answers job scores (its outputs: one scores file each).
SCORED_TAGS = grid.answer_tags(config)


def score_outputs():
    """The scores files one score_answers job writes (wildcard ``scorer``), one per answer set."""
    return [grid.score_path("{scorer}", tag) for tag in SCORED_TAGS]


def get_score_input(wildcards):
    """The test split, every answer set (one spelling of its path: grid.answer_path), the
    scoring prompts and, for a local scorer, its model's files (a classifier: its fitted model)."""
    files = {
        "test": TEST_CSV,
        "answers": [grid.answer_path(tag) for tag in SCORED_TAGS],
        "prompts": config["scoring"]["prompts"],
    }
    files.update(get_scorer_model_files(wildcards))
    return {**files, **classifier_score_inputs(wildcards.scorer)}


def get_score_spec(wildcards):
    """The scorer's identity, kind and prompt variant and the answer sets it scores (not its
    operational keys): a score_answers job's spec."""
    return specs.dumps(specs.build("score_answers", config, wildcards.scorer))


def all_scores(wildcards=None):
    """Every scores file of the grid (the manifest the empathy_scores rule passes in its spec)."""
    return [entry["path"] for entry in scoring_specs.score_manifest(specs.build("empathy_scores", config))]


def classifier_score_inputs(name):
    """What score_answers of a classifier scorer reads besides the answers: its fitted model
    and, for subfactor features, the subfactor scorer's scores of every answer set."""
    spec = specs.build("score_answers", config, name)
    if spec["kind"] != "classifier":
        return {}
    files = {"classifier": spec["model_file"], **miti_tagger_file(spec)}
    if spec["subfactor_scorer"]:
        sub = spec["subfactor_scorer"]["name"]
        files["subfactor_scores"] = [grid.score_path(sub, tag) for tag in SCORED_TAGS]
    return files
