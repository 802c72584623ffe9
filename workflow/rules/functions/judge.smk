# Input functions and specs of the rules in workflow/rules/judge.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def judge_key_envvars():
    """API-key variables of the grid's LLM judges that are set (see llm_key_envvars)."""
    return llm_key_envvars([config["judges"][name] for name in grid.judges(config)])


#: The grid's judged pairs by comparison kind: one judge rule per kind (workflow/rules/judge.smk).
JUDGED_PAIRS = grid.comparisons_by_kind(config)


def judge_outputs(kind):
    """The judgment files one judge job of comparison ``kind`` writes (wildcard ``judge``)."""
    return [
        grid.judgment_path("{judge}", pair.model, pair.opponent) for pair in JUDGED_PAIRS[kind]
    ]


def judge_inputs(kind):
    """Input function for the judge jobs of ``kind``: the test split, every answer set its pairs
    compare, and what the judge's kind reads (a scorer, the prompts; a local model's files)."""
    tags = dict.fromkeys(tag for pair in JUDGED_PAIRS[kind] for tag in (pair.model, pair.opponent))
    answers = [grid.answer_path(tag) for tag in tags]

    def get_judge_inputs(wildcards):
        files = {"test": TEST_CSV, "answers": answers}
        judge = config["judges"][wildcards.judge]
        if judge["backend"] == "transformers":  # a local judge model: built or fetched first
            files["judge_model"] = model_files(judge)
        return {**files, **judges.judge_kind(config, wildcards.judge).inputs(config)}

    return get_judge_inputs


def get_judge_spec(kind):
    """What the verdicts of a judge job of ``kind`` depend on: the judge's identity, the
    protocol and the pairs (not its operational keys: those come with $EMPATHY_DISTILL_RUNTIME)."""

    def get_judge_job_spec(wildcards):
        return specs.dumps(specs.build(grid.judge_rule(kind), config, wildcards.judge, kind))

    return get_judge_job_spec


def get_judge_scorer_arg(wildcards, input):
    """``--scorer <file>`` for a scorer judge (its fitted model is an input), else nothing."""
    return f"--scorer {shlex.quote(input.scorer)}" if "scorer" in input.keys() else ""


def judge_api_calls(wildcards):
    """LLM judges share the global api_calls resource (one at a time); scorer judges not."""
    return 1 if judges.judge_kind(config, wildcards.judge).calls_llm else 0


def get_offline_judge_spec():
    return specs.dumps(specs.build("train_offline_judge", config))
