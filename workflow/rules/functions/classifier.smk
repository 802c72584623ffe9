# Input functions and specs of the rules in workflow/rules/classifier.smk, which includes this
# file first. Functions that several rules files use are in workflow/rules/common.smk.

def classifier_scorer_names():
    """Scorers of kind classifier (trained by rule train_classifier_scorer)."""
    return [n for n, s in config["scoring"]["scorers"].items() if s["kind"] == "classifier"]


def classifier_scorer_regex():
    """Wildcard constraint of the classifier rule: only classifier scorers' names (the
    responses_{split} files of LLM scorers are another rule's)."""
    return "|".join(re.escape(n) for n in classifier_scorer_names()) or "(?!)"


def classifier_subfactor_files(name):
    """{train, test} responses files of the subfactor scorer a classifier reads, if any."""
    sub = specs.build("train_classifier_scorer", config, name)["subfactor_scorer"]
    if not sub:
        return {}
    return {
        f"subfactors_{split}": classifier_paths.RESPONSE_SCORES.format(scorer=sub["name"], split=split)
        for split in ("train", "test")
    }


def get_classifier_train_input(wildcards):
    return {
        "train": SCORER_TRAIN_CSV,
        "test": TEST_CSV,
        **classifier_subfactor_files(wildcards.scorer),
        **miti_tagger_file(specs.build("train_classifier_scorer", config, wildcards.scorer)),
    }


def get_classifier_train_spec(wildcards):
    return specs.dumps(specs.build("train_classifier_scorer", config, wildcards.scorer))


def get_classifier_subfactor_args(wildcards, input):
    """``--subfactors-train F --subfactors-test F`` when the classifier reads subfactors."""
    if "subfactors_train" not in input.keys():
        return ""
    return (
        f"--subfactors-train {shlex.quote(input.subfactors_train)}"
        f" --subfactors-test {shlex.quote(input.subfactors_test)}"
    )
