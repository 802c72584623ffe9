# empathy-distill: distilling empathy from large language models into small ones.
# Reproduces Xie et al., "Distilling Empathy from Large Language Models" (SIGDIAL 2025,
# arXiv:2507.08151) as one declarative workflow. All logic lives in workflow/empathy_distill/.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        get_final_output(),
    default_target: True

