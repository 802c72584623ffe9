# Grid enumeration, input functions and wildcard constraints: the only Python in .smk files.
# The grid itself is computed by empathy_distill.core.grid so that it is unit-tested.

import json
import os
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


def data_configs():
    return grid.data_configs(config)


def set_files(kinds=TRAINING_SETS):
    """Every training set of the configured grid."""
    return [
        f"results/datasets/{dc.method}/{dc.strategy}/{kind}.json"
        for dc in data_configs()
        for kind in kinds
    ]


def teacher_outputs_for_set(wildcards):
    """Teacher rewrites an improved set is built from (three files for the pooled strategy)."""
    return [
        f"results/teacher/{wildcards.method}/{part}.jsonl"
        for part in teacher_files_for(wildcards.strategy)
    ]


def train_resources(student):
    """Resources of a training job: training.resources, then the student's own overrides."""
    own = config["training"]["per_student"].get(student, {}).get("resources", {})
    return {**config["training"]["resources"], **own}


MODEL_DIR = "results/models/{student}/{method}/{strategy}/{stage}"


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


def get_smollm2_generation(wildcards):
    """Decoding defaults written into the built SmolLM2 (a change rebuilds it)."""
    generation = lf_students.builtin_generation_config(config["students"], "smollm2_135m")
    return json.dumps(generation, sort_keys=True)


def model_files(entry):
    """What a job loading this model entry waits for: a built-in model's files, or a Hub model's
    fetch manifest (ancient: a refetch of the same revision retrains nothing; the revision is in
    the jobs' specs)."""
    return lf_students.model_files(entry) + [ancient(m) for m in weights.manifests(config, entry)]


def get_fetch_spec(wildcards):
    """The Hub model and its revision (the fetch_model job)."""
    return specs.dumps(specs.build("fetch_model", config, wildcards.repo))


def get_train_resource(key):
    """Resource ``key`` of a training job (training.resources, then the student's overrides)."""

    def get_train_resource_value(wildcards):
        return train_resources(wildcards.student)[key]

    return get_train_resource_value


def model_outputs():
    """Final adapter of every (student, data configuration, stage) of the grid."""
    return [
        f"results/models/{m.student}/{m.method}/{m.strategy}/{m.stage}/adapter_model.safetensors"
        for m in grid.models(config)
    ]


def teacher_model_files():
    """A local teacher model the workflow builds itself (builtin:tiny in the demo) is an input."""
    teacher = config["teacher"]
    return model_files(teacher) if teacher["backend"] == "transformers" else []


# --- teacher.smk -------------------------------------------------------------------------------

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


def llm_key_envvars(endpoints):
    """API-key variables of these endpoints that are set (passed to jobs, never written
    anywhere); an unset one is left out so a dry run needs no key (the job then names it)."""
    from empathy_distill.llm.backends import api_key_env

    names = [api_key_env(e) for e in endpoints if judges.calls_llm(e)]
    return sorted({n for n in names if n and n in os.environ})


# --- generate.smk ------------------------------------------------------------------------------

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


def get_answer_spec(wildcards):
    """The student, decoding settings and prompts (a change reruns only that student's sets)."""
    return specs.dumps(specs.build("answer", config, wildcards.student))


# --- judge.smk ---------------------------------------------------------------------------------

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


# --- scoring.smk -------------------------------------------------------------------------------

def grid_scorers():
    """The empathy scorers of scoring.grid, by name (none by default)."""
    return {name: config["scoring"]["scorers"][name] for name in grid.scorers(config)}


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


def get_score_spec(wildcards):
    """The scorer's identity, kind and prompt variant and the answer sets it scores (not its
    operational keys): a score_answers job's spec."""
    return specs.dumps(specs.build("score_answers", config, wildcards.scorer))


def get_score_responses_spec(wildcards):
    """The scorer's identity alone (the dataset's responses do not depend on the grid)."""
    return specs.dumps(specs.build("score_responses", config, wildcards.scorer))


def scorer_api_calls(wildcards):
    """API scorers share the global api_calls resource with the teacher and the judges."""
    return 1 if judges.calls_llm(config["scoring"]["scorers"][wildcards.scorer]) else 0


def all_scores(wildcards=None):
    """Every scores file of the grid (the manifest the empathy_scores rule passes in its spec)."""
    return [entry["path"] for entry in scoring_specs.score_manifest(specs.build("empathy_scores", config))]


def scoring_tables():
    """results/tables/empathy_scores.csv when a scorer is in the grid, else nothing."""
    return ["results/tables/empathy_scores.csv"] if grid.scorers(config) else []


# --- report.smk --------------------------------------------------------------------------------

def judge_job_records(wildcards=None):
    """What every judge job wrote (grid.JUDGE_JOB_FILES): the table rules' inputs. Their jobs
    read the judgment files their spec's manifest names; listing those 760 files as inputs made
    a quarter of the default grid's dry run."""
    return evaluation_specs.judge_job_records(config)


def all_answers(wildcards=None):
    return [grid.answer_path(tag) for tag in grid.answer_tags(config)]


def get_offline_agreement_arg(wildcards, input):
    """``--offline-agreement <file>`` when the offline judge is in the grid, else nothing."""
    return f"--offline-agreement {shlex.quote(input.offline[0])}" if input.offline else ""


def offline_judge_selected():
    return bool(judges.scorer_judges(config, grid.judges(config), backend=judges.OFFLINE))


def offline_agreement_files(wildcards=None):
    offline = judges.SCORERS[judges.OFFLINE]
    return [offline.agreement_file] if offline_judge_selected() else []


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


def get_example_answers_input(wildcards):
    """Test split, every answer set and every judge job's record (the job reads the judgment
    files by path)."""
    return {"test": TEST_CSV, "answers": all_answers(), "judgments": judge_job_records()}


def get_answer_lengths_input(wildcards):
    """Test split (the human responses) and every answer set of the grid."""
    return {"test": TEST_CSV, "answers": all_answers()}


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


def report_targets():
    """results/report.html when report.build is on (the demo), else only on request."""
    return [config["report"]["path"]] if config["report"]["build"] else []


def get_report_html_input():
    """Every other target of the grid: `snakemake --report` includes each report() file of the
    DAG and stops at one that does not exist yet, so the report is the grid's last job."""
    last = {config["report"]["path"], GPU_SMOKE_JSON}
    return [target for target in get_final_output() if target not in last]


# --- gpu_smoke.smk -----------------------------------------------------------------------------

GPU_SMOKE_JSON = "results/gpu_smoke.json"


def gpu_smoke_targets():
    """results/gpu_smoke.json when gpu_smoke.summary is on (the gpu-smoke profile)."""
    return [GPU_SMOKE_JSON] if config["gpu_smoke"]["summary"] else []


def get_gpu_smoke_student(wildcards=None):
    """The one student the smoke run measures (its throughput rows are per model)."""
    return gpu_smoke.measured_student(config)


def get_gpu_smoke_input():
    """Every other target: the summary reads the benchmark files of the whole finished DAG."""
    return [target for target in get_final_output() if target != GPU_SMOKE_JSON]


# --- reference_metrics.smk ---------------------------------------------------------------------

def get_reference_metrics_input(wildcards):
    """Test split (the human responses) and every answers file of the rule's spec manifest."""
    spec = specs.build("reference_metrics", config)
    return {"test": TEST_CSV, "answers": [e["path"] for e in evaluation_specs.answer_manifest(spec)]}


def reference_metrics_tables():
    return ["results/tables/reference_metrics.csv"]


# --- emotion.smk -------------------------------------------------------------------------------

def get_emotion_answers_input(wildcards):
    """The answer job's inputs less its prompts (test split, model files, adapter)."""
    files = get_answer_input(wildcards)
    del files["prompts"]
    return files


def get_emotion_answers_spec(wildcards):
    """The student, its weights' precision, the labels and the question."""
    return specs.dumps(specs.build("emotion_answers", config, wildcards.student))


def get_emotion_accuracy_input(wildcards):
    """Test split (the gold emotions) and every emotion file of the rule's spec manifest."""
    spec = specs.build("emotion_accuracy", config)
    return {"test": TEST_CSV, "emotion": [e["path"] for e in evaluation_specs.emotion_manifest(spec)]}


def emotion_accuracy_tables():
    """results/tables/emotion_accuracy.csv when evaluation.emotion_accuracy is on."""
    return ["results/tables/emotion_accuracy.csv"] if config["evaluation"]["emotion_accuracy"] else []


# --- scoring_agreement.smk (scorers vs human ratings, rater variance, empathy change) -----------

import re  # noqa: E402

from empathy_distill.evaluation.scoring import responses as scored_responses  # noqa: E402


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


# --- classifier.smk (offline feature classifiers, scorer kind "classifier") ---------------------

from empathy_distill.evaluation.scoring import classifier as classifier_paths  # noqa: E402


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


# --- pride.smk (PRIDE training jobs) -----------------------------------------------------------

from empathy_distill.training.pride import config as pride_config  # noqa: E402

# training.pride keys (options, teacher, resources) of every configured student, before any job.
pride_config.validate(config)


def pride_teacher_files(wildcards):
    """What loading ``wildcards.student``'s PRIDE teacher reads: the teacher's files when the
    workflow builds it (a builtin: model) or fetches it; for the sft teacher, the
    configuration's SFT adapter (so the teacher runs after SFT)."""
    files = {}
    options = pride_config.merged_options(config, wildcards.student)
    teacher = pride_config.teacher_of(config, wildcards.student, options)
    if teacher != wildcards.student:
        files["teacher_model"] = model_files(config["students"][teacher])
    if options["teacher"] == pride_config.SFT_TEACHER:
        adapter = pride_config.SFT_ADAPTER_DIR.format(
            student=wildcards.student, method=wildcards.method, strategy=wildcards.strategy
        )
        files["teacher_adapter"] = [
            f"{adapter}/adapter_model.safetensors",
            f"{adapter}/adapter_config.json",
        ]
    if options["reasoning"] is not None:
        files["reasoning"] = pride_config.REASONING_PATH.format(teacher=teacher)
    return files


def pride_teacher_outputs_dir(wildcards):
    """The folder of the job's precomputed teacher outputs; None when the teacher runs online
    (training.pride.teacher_outputs) or no term needs it."""
    settings = pride_config.build_settings(
        config, wildcards.student, wildcards.method, wildcards.strategy
    )
    return settings.get("teacher_outputs_dir")


def pride_study_files(wildcards):
    """The scoring study's pinned files the teacher's privileged prompt is built from
    (training.pride.privileged_fields: miti, subfactors); rule download_scoring_study makes them."""
    settings = pride_config.build_settings(
        config, wildcards.student, wildcards.method, wildcards.strategy
    )
    return [entry["file"] for entry in (settings.get("study_data") or {}).values()]


def get_pride_train_input(wildcards):
    """What every training job reads (get_train_input); with precomputed teacher outputs, those
    (rule pride_teacher_outputs) and the reasoning file the examples are encoded with, no
    teacher; online, what loading the teacher reads (pride_teacher_files)."""
    files = get_train_input(wildcards)
    files["study"] = pride_study_files(wildcards)
    teacher = pride_teacher_files(wildcards)
    folder = pride_teacher_outputs_dir(wildcards)
    if folder is None:
        return {**files, **teacher}
    files["teacher_outputs"] = f"{folder}/manifest.json"
    if "reasoning" in teacher:
        files["reasoning"] = teacher["reasoning"]
    return files


def get_pride_teacher_outputs_input(wildcards):
    """The configuration's SFT set (checked for leakage), train.csv, the student's files (its
    tokenizer; the weights of the sft and base teachers) and the teacher's."""
    data = f"results/datasets/{wildcards.method}/{wildcards.strategy}"
    return {
        "data": f"{data}/sft.json",
        "leakage": f"{data}/leakage_check.ok",
        "train": TRAIN_CSV,
        "model": model_files(config["students"][wildcards.student]),
        "study": pride_study_files(wildcards),
        **pride_teacher_files(wildcards),
    }


def get_pride_teacher_outputs_spec(wildcards):
    """Everything that shapes the teacher's stored outputs (a change recomputes them)."""
    return specs.dumps(
        specs.build(
            "pride_teacher_outputs",
            config,
            wildcards.student,
            wildcards.method,
            wildcards.strategy,
        )
    )


def get_pride_teacher_resource(key):
    """Resource ``key`` of a job that loads the PRIDE teacher (teacher_resources over the PRIDE
    resources: 4 GPUs for the Llama student's 70B teacher)."""

    def get_pride_teacher_resource_value(wildcards):
        return pride_config.teacher_resources(config, wildcards.student)[key]

    return get_pride_teacher_resource_value


def get_pride_reasoning_spec(wildcards):
    """Everything that shapes the teacher's reasoning file (a change rewrites it; the cache
    answers what was asked before)."""
    return specs.dumps(specs.build("pride_reasoning", config, wildcards.teacher))


def get_pride_reasoning_input(wildcards):
    """The train split and, for a built-in teacher, its files (rule build_*_student)."""
    files = {"train": TRAIN_CSV}
    files["model"] = model_files(config["students"][wildcards.teacher])
    return files


def get_pride_reasoning_resource(key):
    """Resource ``key`` of the reasoning job: the teacher resources of the first grid student
    this teacher teaches with reasoning on (its teacher-outputs jobs load the same teacher)."""

    def get_pride_reasoning_resource_value(wildcards):
        student, _ = pride_config.reasoning_teachers(config)[wildcards.teacher]
        return pride_config.teacher_resources(config, student)[key]

    return get_pride_reasoning_resource_value


def get_pride_resource(key):
    """Resource ``key`` of a PRIDE training job (training.resources < training.pride.resources <
    the student's resources < the student's pride.resources; online, the teacher's)."""

    def get_pride_resource_value(wildcards):
        return pride_config.train_resources(config, wildcards.student)[key]

    return get_pride_resource_value


# --- scoring_finetune.smk (fine-tuned rating scorers) ------------------------------------------

def finetuned(scorer):
    """Whether scoring.scorers.<scorer> is fine-tuned first (has a finetune block)."""
    return bool(config["scoring"]["scorers"][scorer].get("finetune"))


def get_scorer_model_input(wildcards):
    """``{"scorer_model": model.json}`` for a fine-tuned scorer, else nothing: every rule that
    scores with a scorer (score_answers, score_responses) unpacks it into its inputs."""
    if not finetuned(wildcards.scorer):
        return {}
    return {"scorer_model": f"results/scorers/{wildcards.scorer}/model.json"}


def get_scorer_model_arg(wildcards, input):
    """``--scorer-model <model.json>`` for a fine-tuned scorer, else nothing."""
    if "scorer_model" not in input.keys():
        return ""
    return f"--scorer-model {shlex.quote(input.scorer_model)}"


def get_scorer_train_data_spec(wildcards):
    return specs.dumps(specs.build("scorer_train_data", config, wildcards.scorer))


def get_finetune_scorer_spec(wildcards):
    """Everything that shapes the fine-tuned model (a change retrains it)."""
    return specs.dumps(specs.build("finetune_scorer", config, wildcards.scorer))


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


# --- scoring_study.smk (the companion study's published data and its classifier table) ------

from empathy_distill.evaluation.scoring import study_grid, study_protocol  # noqa: E402
from empathy_distill.cost import study_scorers as cost_study_scorers  # noqa: E402

STUDY_DATA = config["scoring"]["study_data"]
STUDY_DIR = STUDY_DATA["dir"].rstrip("/")


def study_file(name):
    return f"{STUDY_DIR}/{name}"


def scoring_study_targets():
    """The reproduction table and figure when scoring.study_reproduction is on (the default)."""
    if not config["scoring"]["study_reproduction"]:
        return []
    return [study_grid.TABLE, study_grid.FIGURE]


def get_scoring_study_reproduction_spec(wildcards):
    return specs.dumps(specs.build("scoring_study_reproduction", config))


# --- scoring_study_finetune.smk (the study's fine-tuning protocol) ----------------------------

def study_scorer_pattern():
    """Regex of the scorers of scoring.study_protocol (one matching nothing when none)."""
    names = study_protocol.scorers(config)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def get_study_scorer_data_spec(wildcards):
    return specs.dumps(specs.build("study_scorer_data", config, wildcards.scorer))


def get_finetune_study_scorer_spec(wildcards):
    """Everything that shapes the model tuned on the study's 80% (a change retrains it)."""
    return specs.dumps(specs.build("finetune_study_scorer", config, wildcards.scorer))


def get_finetune_study_scorer_input(wildcards):
    """As finetune_scorer's, from the study protocol's folder."""
    folder = study_protocol.FOLDER.format(scorer=wildcards.scorer)
    files = {"train": f"{folder}/train.jsonl"}
    if config["scoring"]["scorers"][wildcards.scorer]["backend"] == "transformers":
        files["info"] = f"{folder}/dataset_info.json"
        files["model"] = get_finetune_scorer_input(wildcards)["model"]
    return files


def get_score_study_test_spec(wildcards):
    return specs.dumps(specs.build("score_study_test", config, wildcards.scorer))


def get_study_finetune_files(wildcards):
    """What the reproduction table reads for its fine-tuned rows (the spec's manifest)."""
    spec = specs.build("scoring_study_reproduction", config)
    return [
        path
        for entry in scoring_specs.study_finetune_manifest(spec)
        for path in (entry["model"], entry["predictions"])
    ]


# --- scoring_offline.smk (offline subfactor scorer, MITI tagger) -------------------------------

from empathy_distill.data import scoring_study as study_files  # noqa: E402
from empathy_distill.evaluation.scoring import offline as offline_paths  # noqa: E402

#: The study's files the offline models learn from (dialogues with MITI codes, subfactor scores).
OFFLINE_STUDY_FILES = (study_files.DIALOGUES, study_files.SUBFACTOR_SCORES)


def offline_subfactor_names():
    """Subfactors scorers with backend offline (trained by rule train_offline_subfactors)."""
    return [
        n for n, s in config["scoring"]["scorers"].items() if scoring_specs.is_offline_subfactors(s)
    ]


def offline_subfactor_regex():
    return "|".join(re.escape(n) for n in offline_subfactor_names()) or "(?!)"


def get_offline_subfactors_spec(wildcards):
    return specs.dumps(specs.build("train_offline_subfactors", config, wildcards.scorer))


def miti_tagger_file(spec):
    """{"miti_tagger": its model} for a classifier spec whose features name miti, else {}."""
    tagger = spec.get("miti_tagger")
    return {"miti_tagger": tagger["model_file"]} if tagger else {}


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
