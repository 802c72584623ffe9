# Input functions and settings of the evaluation rules (generate.smk, judge.smk, report.smk).
# Meant to be merged into common.smk; include this file before those rule files.

import json
import os

# --- generate.smk ------------------------------------------------------------------------------

GEN_RESOURCES = config["generation"]["resources"]


def student_model_files(wildcards):
    """Files of a built-in student (e.g. the offline tiny model) to wait for; none for hub ids."""
    from empathy_distill.training.students import model_files

    return model_files(config["students"][wildcards.student])


def generation_settings(wildcards):
    """The config slice an answer job depends on (a change reruns only affected jobs)."""
    generation = {k: v for k, v in config["generation"].items() if k != "resources"}
    return json.dumps(
        {
            "students": {wildcards.student: config["students"][wildcards.student]},
            "generation": generation,
            "prompts": config["prompts"],
        },
        sort_keys=True,
    )


# --- judge.smk ---------------------------------------------------------------------------------

def judge_key_envvars():
    """API-key variables of the configured LLM judges that are set (passed to jobs, never
    written anywhere); an unset one is left out so a dry run needs no key."""
    from empathy_distill.llm.backends import api_key_env

    names = [api_key_env(e) for e in config["judges"].values() if e["backend"] != "offline"]
    return sorted({n for n in names if n and n in os.environ})


def judge_inputs(wildcards):
    """Both answer sets of the pair, and the trained scorer for an offline judge."""
    from empathy_distill.grid import answer_path

    files = {
        "test": "results/data/test.csv",
        "model": answer_path(wildcards.model),
        "opponent": answer_path(wildcards.opponent),
    }
    if config["judges"][wildcards.judge]["backend"] == "offline":
        files["scorer"] = "results/judges/offline/model.joblib"
    else:
        files["prompts"] = config["prompts"]
    return files


def judge_settings(wildcards):
    """The config slice a judge job depends on."""
    return json.dumps(
        {
            "judges": {wildcards.judge: config["judges"][wildcards.judge]},
            "evaluation": {"paper_faithful": config["evaluation"]["paper_faithful"]},
            "llm": config["llm"],
            "prompts": config["prompts"],
        },
        sort_keys=True,
    )


def judge_api_calls(wildcards):
    """LLM judges share the global api_calls resource (one at a time); the offline one not."""
    return 0 if config["judges"][wildcards.judge]["backend"] == "offline" else 1


def offline_judge_settings():
    offline = {k: v for k, v in config["judges"].items() if v["backend"] == "offline"}
    return json.dumps(
        {
            "judges": offline,
            "llm": {"cache_dir": config["llm"]["cache_dir"]},
            "evaluation": {"seed": config["evaluation"]["seed"]},
        },
        sort_keys=True,
    )


# --- report.smk --------------------------------------------------------------------------------

def all_judgments(wildcards=None):
    from empathy_distill.grid import comparisons, judges

    return [
        f"results/judgments/{judge}/{pair.name}.jsonl"
        for judge in judges(config)
        for pair in comparisons(config)
    ]


def all_answers(wildcards=None):
    from empathy_distill.grid import answer_path, answer_tags

    return [answer_path(tag) for tag in answer_tags(config)]


def offline_agreement_files(wildcards=None):
    has_offline = any(j["backend"] == "offline" for j in config["judges"].values())
    return ["results/judges/offline/agreement.json"] if has_offline else []


def figure_files():
    from empathy_distill.evaluation.figures import KINDS
    from empathy_distill.grid import judges

    return [f"results/figures/{kind}_{judge}.png" for kind in KINDS for judge in judges(config)]
