# empathy-distill: distilling empathy from large language models into small ones.
# Reproduces Xie et al., "Distilling Empathy from Large Language Models" (SIGDIAL 2025,
# arXiv:2507.08151) as one declarative workflow. All logic lives in workflow/empathy_distill/.

import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# A config.yaml that is not YAML: name the file and line (Snakemake's own message names neither).
# Overlays given with --configfile are parsed by Snakemake before this file runs.
sys.path.insert(0, str(Path(workflow.current_basedir) / "workflow"))
from empathy_distill.startup import check_config_files

check_config_files(["config.yaml"])


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/pride.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/scoring.smk"
include: "workflow/rules/scoring_agreement.smk"
include: "workflow/rules/classifier.smk"
include: "workflow/rules/scoring_finetune.smk"
include: "workflow/rules/scoring_study.smk"
include: "workflow/rules/scoring_study_finetune.smk"
include: "workflow/rules/scoring_offline.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/reference_metrics.smk"
include: "workflow/rules/emotion.smk"
include: "workflow/rules/gpu_smoke.smk"


rule all:
    input:
        get_final_output(),
    default_target: True


# On a cluster (workflow/profiles/slurm) these run in the main Snakemake process on the submit
# host, never through sbatch (the judge rules, judge_<kind>, say `localrule: True` in
# workflow/rules/judge.smk): the API rules (teacher, judges, scorers) and the download need the
# internet and the API keys (fetch_model: the Hub and $HF_TOKEN), the rest take seconds and would only wait in the queue. train and
# answer (GPU), build_tiny_student and train_offline_judge are submitted. Without a cluster: no
# effect.
localrules:
    all,
    download_dataset,
    fetch_model,
    split_dataset,
    scorer_train_split,
    improve_human_sources,
    improve_llm_sources,
    direct_sets,
    improved_sets,
    dataset_info,
    teacher_initial,
    teacher_improve,
    cost,
    score_answers,
    scorer_train_data,
    win_rates,
    empathy_scores,
    judge_agreement,
    figure_heatmap,
    figure_targeted_vs_naive,
    figure_sft_vs_dpo,
    figures,
    report_html,
    gpu_smoke_summary,

