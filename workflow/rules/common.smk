# Included first, for every rules file: the package on the path, the imports, the start-up
# checks, the shared paths and wildcard constraints, the input functions that several rules files
# use, and the default targets (get_final_output). The input functions and specs of one rules file
# are in workflow/rules/functions/ under its name, included at its top. The grid itself is
# computed by empathy_distill.core.grid so that it is unit-tested.

import json
import os
import re
import shlex
import sys
from pathlib import Path

PACKAGE_DIR = str(Path(workflow.current_basedir).parent)  # workflow/, beside rules/
if PACKAGE_DIR not in sys.path:
    sys.path.insert(0, PACKAGE_DIR)
# Rules call `python -m empathy_distill...`: make the package importable in every job, local or
# on a cluster node (the checkout sits on the shared file system).
# Their `python` is the interpreter running Snakemake (its venv, even when not activated);
# with --sdm conda, the rule's environment comes first on PATH instead.
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (PACKAGE_DIR, os.environ.get("PYTHONPATH")) if p),
    PATH=os.pathsep.join(p for p in (str(Path(sys.executable).parent), os.environ.get("PATH")) if p),
)

from empathy_distill import stages, startup, weights  # noqa: E402  (stages: registers specs, checks)
from empathy_distill.core import grid, hub, judges, runtime, specs, strategies  # noqa: E402
from empathy_distill.core.config import validate_config  # noqa: E402
from empathy_distill.data.dataset import load_dataset  # noqa: E402
from empathy_distill.evaluation import specs as evaluation_specs  # noqa: E402
from empathy_distill.evaluation.scoring import specs as scoring_specs  # noqa: E402
from empathy_distill.distillation.sets import teacher_files_for  # noqa: E402
from empathy_distill.evaluation import gpu_smoke  # noqa: E402
from empathy_distill.training import llamafactory_config as lf_config  # noqa: E402
from empathy_distill.core import students as lf_students  # noqa: E402
from empathy_distill.training.methods import STAGES, TRAINING_SETS, previous_stage  # noqa: E402
from empathy_distill.training.methods import method as training_method  # noqa: E402
from empathy_distill.training.pride import config as pride_config  # noqa: E402
from empathy_distill.evaluation.scoring import responses as scored_responses  # noqa: E402
from empathy_distill.evaluation.scoring import classifier as classifier_paths  # noqa: E402
from empathy_distill.evaluation.scoring import study_grid, study_protocol  # noqa: E402
from empathy_distill.cost import study_scorers as cost_study_scorers  # noqa: E402
from empathy_distill.data import scoring_study as study_files  # noqa: E402
from empathy_distill.evaluation.scoring import offline as offline_paths  # noqa: E402

validate_config(config)
# Training keys against LLaMA-Factory's own argument table (no LLaMA-Factory import here).
lf_config.validate_training(config)
# Teacher and judges the grid calls: a usable backend, base_url, a price for paid models.
startup.check_endpoints(config)
# API keys: a dry run plans without them (warning); a real run checks them in `onstart` (below),
# after the DAG is known and before any job, for the endpoints its jobs actually call.
_missing_keys = startup.missing_keys(startup.planned_endpoints(config))
if _missing_keys and not config["llm"]["cache_only"]:
    print(
        f"warning: {startup.key_message(_missing_keys)}; a dry run plans anyway, a real run "
        "refuses to start if its jobs call these endpoints",
        file=sys.stderr,
    )
# The job contract: each rule's only config input is its spec (params.spec: specs.build(rule, ...)
# calls the one builder its stage registered with empathy_distill/core/specs.py; importing
# empathy_distill.stages above registers them all; docs/design.md), so Snakemake reruns a job
# exactly when what shapes its output changes. The operational keys (concurrency, rate limits,
# retries, timeouts, budget, resources) reach jobs through one channel that is not a rerun
# trigger: $EMPATHY_DISTILL_RUNTIME (empathy_distill/core/runtime.py).
runtime.export(config)
# Hugging Face weights (fetch_model in workflow/rules/models.smk). Every job runs offline on one
# cache, here as for PYTHONPATH above, so local jobs and cluster jobs (which parse this file again)
# alike; only fetch_model goes online. Models not pinned to a commit are named once, at start-up.
os.environ.update(hub.job_environment(config["models"]["cache_dir"]))
for _warning in weights.check(config):
    print(f"warning: {_warning}", file=sys.stderr)

DATASET = config["dataset"]["path"]
PROMPTS = config["prompts"]
TRAIN_CSV = grid.TRAIN_CSV
TEST_CSV = grid.TEST_CSV
SCORER_TRAIN_CSV = grid.SCORER_TRAIN_CSV  # scoring.train_dialogues, not max_train_dialogues
# Conda environment of the CPU rules (for --sdm conda; locally the installed venv is used).
CORE_ENV = "../../envs/core.yaml"

# A malformed dataset must stop the run before any job, API call or GPU hour.
if Path(DATASET).exists():
    load_dataset(DATASET)
# training.pride keys (options, teacher, resources) of every configured student, before any job.
pride_config.validate(config)


onstart:
    # Runs only for a real run (never with -n), after the DAG is built, before the first job.
    startup.require_keys(
        config, ((job.rule.name, dict(job.wildcards)) for job in workflow.dag.needrun_jobs())
    )
    # Hub models still to fetch: may $HF_TOKEN download them (licence accepted, revision exists)?
    weights.require_access(
        config,
        (j.wildcards.repo for j in workflow.dag.needrun_jobs() if j.rule.name == "fetch_model"),
    )


wildcard_constraints:
    method="|".join(grid.METHODS),
    strategy=strategies.wildcard_regex(strategies.names()),
    student=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    stage="|".join(STAGES),
    # an answer set of a student: its base model or a trained model (method/strategy/stage)
    variant="base|(?:{})/[a-z0-9_]+/(?:{})".format("|".join(grid.METHODS), "|".join(STAGES)),
    judge=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


# --- input functions used by several rule files ----------------------------------------------

# Models: every rule that loads one.

def model_files(entry):
    """What a job loading this model entry waits for: a built-in model's files, or a Hub model's
    fetch manifest (ancient: a refetch of the same revision retrains nothing; the revision is in
    the jobs' specs)."""
    return lf_students.model_files(entry) + [ancient(m) for m in weights.manifests(config, entry)]


# Training: train.smk and pride.smk.

MODEL_DIR = grid.MODELS


def get_train_input(wildcards):
    """The stage's training set, the data configuration's checks, the student's files and, for
    a stage that continues another (DPO continues SFT), that stage's adapter."""
    method = training_method(wildcards.stage)
    data = f"results/datasets/{wildcards.method}/{wildcards.strategy}"
    files = {
        "data": f"{data}/{method.training_set}.json",
        "info": f"{data}/dataset_info.json",
        "leakage": f"{data}/leakage_check.ok",
        "model": model_files(config["students"][wildcards.student]),
        "extra": list(method.extra_inputs),
    }
    previous = previous_stage(wildcards.stage)
    if previous is not None:
        folder = MODEL_DIR.format(**{**dict(wildcards), "stage": previous})
        files["previous_adapter"] = f"{folder}/adapter_model.safetensors"
        files["previous_config"] = f"{folder}/adapter_config.json"
    return files


def get_train_spec(wildcards):
    """Everything that shapes the adapter, as the trainer resolves it (a change retrains)."""
    return specs.build(
        "train", config, wildcards.student, wildcards.method, wildcards.strategy, wildcards.stage
    )


def get_output_dir(wildcards, output):
    """Folder of a rule's first output (a built student, a trained adapter)."""
    return os.path.dirname(output[0])


# API keys: teacher.smk, judge.smk, scoring.smk.

def llm_key_envvars(endpoints):
    """API-key variables of these endpoints that are set (passed to jobs, never written
    anywhere); an unset one is left out so a dry run needs no key (the job then names it)."""
    from empathy_distill.llm.backends import api_key_env

    names = [api_key_env(e) for e in endpoints if judges.calls_llm(e)]
    return sorted({n for n in names if n and n in os.environ})


# Answers: generate.smk and emotion.smk.

def generation_resources(student):
    """Resources of an answer job: generation.resources, then the student's own overrides."""
    own = config["generation"]["per_student"].get(student, {}).get("resources", {})
    return {**config["generation"]["resources"], **own}


def student_model_files(wildcards):
    """Files of a built-in student (e.g. the offline tiny model) to wait for; none for hub ids."""
    return model_files(config["students"][wildcards.student])


def get_answer_input(wildcards):
    """Test dialogues, prompts and the student's files; the adapter of a trained model."""
    files = {"test": TEST_CSV, "prompts": config["prompts"], "model": student_model_files(wildcards)}
    if wildcards.variant != "base":
        folder = f"results/models/{wildcards.student}/{wildcards.variant}"
        files["adapter"] = f"{folder}/adapter_model.safetensors"
        files["adapter_config"] = f"{folder}/adapter_config.json"
    return files


def get_answer_adapter_arg(wildcards, input):
    """``--adapter <folder>`` for a trained model, nothing for the base model."""
    if "adapter" not in input.keys():
        return ""
    return f"--adapter {shlex.quote(os.path.dirname(input.adapter))}"


def get_answer_resource(key):
    """Resource ``key`` of an answer job (generation.resources, then the student's overrides)."""

    def get_answer_resource_value(wildcards):
        return generation_resources(wildcards.student)[key]

    return get_answer_resource_value


# Scorers: scoring.smk, scoring_agreement.smk, scoring_finetune.smk, scoring_study_finetune.smk.

def finetuned(scorer):
    """Whether scoring.scorers.<scorer> is fine-tuned first (has a finetune block)."""
    return bool(config["scoring"]["scorers"][scorer].get("finetune"))


def get_scorer_model_input(wildcards):
    """``{"scorer_model": model.json}`` for a fine-tuned scorer, else nothing: every rule that
    scores with a scorer (score_answers, score_responses) unpacks it into its inputs."""
    if not finetuned(wildcards.scorer):
        return {}
    return {"scorer_model": f"results/scorers/{wildcards.scorer}/model.json"}


def get_scorer_model_files(wildcards):
    """What a scorer's model needs before it scores (score_answers and score_responses): a
    fine-tuned scorer's model.json (the merged model is self-contained), a local model's files,
    nothing for an API model."""
    scorer = config["scoring"]["scorers"][wildcards.scorer]
    if scorer.get("finetune"):
        return get_scorer_model_input(wildcards)
    if scorer.get("backend") == "transformers":
        return {"model": model_files(scorer)}
    if scoring_specs.is_offline_subfactors(scorer):
        return {"offline_model": offline_paths.SUBFACTOR_MODEL.format(scorer=wildcards.scorer)}
    return {}


def get_scorer_model_arg(wildcards, input):
    """``--scorer-model <model.json>`` for a fine-tuned scorer, else nothing."""
    if "scorer_model" not in input.keys():
        return ""
    return f"--scorer-model {shlex.quote(input.scorer_model)}"


def scorer_api_calls(wildcards):
    """API scorers share the global api_calls resource with the teacher and the judges."""
    return 1 if judges.calls_llm(config["scoring"]["scorers"][wildcards.scorer]) else 0


def get_finetune_scorer_input(wildcards):
    """The scorer's examples (and LLaMA-Factory's dataset_info), and a built-in base model."""
    from empathy_distill.evaluation.scoring import finetune as scorer_finetune

    scorer = config["scoring"]["scorers"][wildcards.scorer]
    folder = f"results/scorers/{wildcards.scorer}"
    files = {"train": f"{folder}/train.jsonl"}
    if scorer["backend"] == "transformers":
        files["info"] = f"{folder}/dataset_info.json"
        files["model"] = model_files({"model": scorer_finetune.base_model(scorer)})
    return files


def get_finetune_scorer_module(wildcards):
    """The job's module: one per backend (transformers: local LoRA; openai: the API)."""
    from empathy_distill.evaluation.scoring.finetune import MODULES

    return MODULES[config["scoring"]["scorers"][wildcards.scorer]["backend"]]


def get_finetune_scorer_resource(key):
    """Resource ``key``: training.resources, then finetune.resources; an API fine-tune needs
    no GPU and one thread."""

    def get_finetune_scorer_resource_value(wildcards):
        scorer = config["scoring"]["scorers"][wildcards.scorer]
        if scorer["backend"] != "transformers":
            return {"gpu": 0, "threads": 1}.get(key, config["training"]["resources"][key])
        return {**config["training"]["resources"], **scorer["finetune"]["resources"]}[key]

    return get_finetune_scorer_resource_value


def get_finetune_scorer_api_calls(wildcards):
    """An API fine-tune shares the global api_calls resource with the other API rules."""
    return 1 if config["scoring"]["scorers"][wildcards.scorer]["backend"] != "transformers" else 0


# The scoring study's files: teacher.smk (cost), scoring_study*.smk, scoring_offline.smk.

STUDY_DATA = config["scoring"]["study_data"]


STUDY_DIR = STUDY_DATA["dir"].rstrip("/")


def study_file(name):
    return f"{STUDY_DIR}/{name}"


# MITI tagger: classifier.smk and scoring.smk.

def miti_tagger_file(spec):
    """{"miti_tagger": its model} for a classifier spec whose features name miti, else {}."""
    tagger = spec.get("miti_tagger")
    return {"miti_tagger": tagger["model_file"]} if tagger else {}


# --- default targets: rule all (Snakefile), report_html, gpu_smoke_summary -------------------

def data_configs():
    return grid.data_configs(config)


def model_outputs():
    """Final adapter of every (student, data configuration, stage) of the grid."""
    return [f"{grid.adapter_dir(m.tag)}/adapter_model.safetensors" for m in grid.models(config)]


def all_answers(wildcards=None):
    return [grid.answer_path(tag) for tag in grid.answer_tags(config)]


def figure_files():
    return [
        f"results/figures/{kind}_{judge}.png"
        for kind in grid.FIGURE_KINDS
        for judge in grid.judges(config)
    ]


def example_files():
    """The report's readable answers: example dialogues and the answer-length distribution."""
    return [
        "results/tables/example_answers.csv",
        "results/tables/example_answers.html",
        "results/tables/answer_lengths.csv",
        "results/figures/answer_lengths.png",
    ]


def scoring_tables():
    """results/tables/empathy_scores.csv when a scorer is in the grid, else nothing."""
    return ["results/tables/empathy_scores.csv"] if grid.scorers(config) else []


def agreement_targets():
    """The rater-variance table always (cheap, no scorer); with a scorer in the grid, the
    agreement table, the train responses asked for, and one change heatmap per scorer."""
    targets = ["results/tables/rater_variance.csv"]
    if not grid.scorers(config):
        return targets
    targets += ["results/tables/scorer_agreement.csv"]
    targets += [
        scored_responses.responses_path(name, split)
        for name in scored_responses.llm_scorers(config)
        for split in scored_responses.scored_splits(config)
    ]
    targets += [f"results/figures/empathy_change_{name}.png" for name in grid.scorers(config)]
    return targets


def reference_metrics_tables():
    return ["results/tables/reference_metrics.csv"]


def emotion_accuracy_tables():
    """results/tables/emotion_accuracy.csv when evaluation.emotion_accuracy is on."""
    return ["results/tables/emotion_accuracy.csv"] if config["evaluation"]["emotion_accuracy"] else []


def scoring_study_targets():
    """The reproduction table and figure when scoring.study_reproduction is on (the default)."""
    if not config["scoring"]["study_reproduction"]:
        return []
    return [study_grid.TABLE, study_grid.FIGURE]


def offline_scorer_targets():
    """The agreement tables of the offline models the grid uses: each offline subfactors scorer
    of scoring.grid, and the MITI tagger when a grid classifier reads miti features (or the
    subfactor scorer of one is offline)."""
    targets = []
    for name in grid.scorers(config):
        scorer = config["scoring"]["scorers"][name]
        if scoring_specs.is_offline_subfactors(scorer):
            targets.append(offline_paths.SUBFACTOR_AGREEMENT.format(scorer=name))
        if scorer["kind"] == "classifier":
            spec = specs.build("train_classifier_scorer", config, name)
            if spec.get("miti_tagger"):
                targets.append(offline_paths.MITI_AGREEMENT)
            sub = spec["subfactor_scorer"]
            if sub and scoring_specs.is_offline_subfactors(config["scoring"]["scorers"][sub["name"]]):
                targets.append(offline_paths.SUBFACTOR_AGREEMENT.format(scorer=sub["name"]))
    return list(dict.fromkeys(targets))


def report_targets():
    """results/report.html when report.build is on (the demo), else only on request."""
    return [config["report"]["path"]] if config["report"]["build"] else []


GPU_SMOKE_JSON = "results/gpu_smoke.json"


def gpu_smoke_targets():
    """results/gpu_smoke.json when gpu_smoke.summary is on (the gpu-smoke profile)."""
    return [GPU_SMOKE_JSON] if config["gpu_smoke"]["summary"] else []


def get_final_output():
    """Everything `snakemake` builds by default: the whole configured grid."""
    targets = ["results/datasets/dataset_info.json"]
    targets += [
        f"results/datasets/{dc.method}/{dc.strategy}/leakage_check.ok" for dc in data_configs()
    ]
    targets += model_outputs()
    targets += all_answers()
    targets += ["results/tables/win_rates.csv", "results/tables/judge_agreement.csv"]
    targets += scoring_tables()
    targets += agreement_targets()
    targets += figure_files()
    targets += example_files()
    targets += reference_metrics_tables()
    targets += emotion_accuracy_tables()
    targets += scoring_study_targets()  # rule scoring_study_reproduction
    targets += offline_scorer_targets()  # rules train_offline_subfactors, train_miti_tagger
    targets += report_targets()
    targets += gpu_smoke_targets()
    return targets
