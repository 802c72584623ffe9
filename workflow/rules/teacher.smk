# Teacher LLM: initial responses, improve_llm sources, every improvement strategy, and the cost
# projection. API rules take one `api_calls` unit: run with `--resources api_calls=1` (the
# profiles set it) so parallel jobs never exceed the endpoint's own concurrency limit.

import json

from empathy_distill import teacher as teacher_rules
from empathy_distill.llm.settings import BUDGET_ENV, endpoint_identity

TEACHER = config.get("teacher") or {}
# What determines the teacher's answers is a param (a change reruns the teacher and everything
# downstream); operational settings (concurrency, rate limits, retries, polling) reach the jobs
# with the full config through the environment ($EMPATHY_DISTILL_CONFIG, common.smk), so tuning
# them never retrains 84 models from cached answers.
TEACHER_IDENTITY = json.dumps(endpoint_identity(TEACHER), sort_keys=True)
LLM = config["llm"]
TEACHER_COST_REPORT = "results/costs/teacher.csv"
# A local teacher (backend transformers, e.g. the demo's builtin:tiny) imports torch: with
# --sdm conda the rules running empathy_distill.teacher then use the training environment.
TEACHER_ENV = "../../envs/train.yaml" if TEACHER.get("backend") == "transformers" else CORE_ENV
# The budget cap reaches jobs through the environment, not a param: raising it after a stop
# must not make Snakemake rerun (and re-timestamp) every finished teacher job.
if LLM["budget_usd"] is not None:
    os.environ[BUDGET_ENV] = str(LLM["budget_usd"])


envvars: *teacher_rules.set_key_envvars([TEACHER])


teacher_improve_input = teacher_rules.improve_inputs(config, PROMPTS)
cost_inputs = teacher_rules.cost_inputs(config, TRAIN_CSV, TEST_CSV, PROMPTS)


rule teacher_initial:
    input:
        train=TRAIN_CSV,
        test=TEST_CSV,
        prompts=PROMPTS,
        model=teacher_model_files(),
    output:
        initial="results/teacher/initial.jsonl",
        answers="results/answers/teacher.jsonl",
    params:
        teacher=TEACHER_IDENTITY,
        cache_dir=LLM["cache_dir"],
        price_table=LLM["price_table"],
        cost_report=TEACHER_COST_REPORT,
    resources:
        api_calls=1,
    conda:
        TEACHER_ENV
    log:
        "logs/teacher/initial.log",
    shell:
        "python -m empathy_distill.teacher initial"
        ' --config-json "$EMPATHY_DISTILL_CONFIG"'
        " --cache-dir {params.cache_dir:q} --price-table {params.price_table:q}"
        " --cost-report {params.cost_report} --prompts {input.prompts:q}"
        " --train {input.train} --test {input.test}"
        " --out {output.initial} --answers {output.answers} > {log} 2>&1"


rule improve_llm_sources:
    input:
        train=TRAIN_CSV,
        initial="results/teacher/initial.jsonl",
    output:
        "results/data/sources/improve_llm.csv",
    params:
        n=config["distillation"]["improve_llm_sft_sample"]["n"],
        seed=config["distillation"]["improve_llm_sft_sample"]["seed"],
    conda:
        TEACHER_ENV
    log:
        "logs/teacher/improve_llm_sources.log",
    shell:
        "python -m empathy_distill.teacher llm-sources --train {input.train}"
        " --initial {input.initial} --n {params.n} --seed {params.seed} --out {output}"
        " > {log} 2>&1"


rule teacher_improve:
    input:
        unpack(teacher_improve_input),
        model=teacher_model_files(),
    output:
        "results/teacher/{method}/{strategy}.jsonl",
    wildcard_constraints:
        method="improve_human|improve_llm",
        strategy=strategies.wildcard_regex(strategies.names(*strategies.TEACHER_CALL_KINDS)),
    params:
        teacher=TEACHER_IDENTITY,
        cache_dir=LLM["cache_dir"],
        price_table=LLM["price_table"],
        cost_report=TEACHER_COST_REPORT,
    resources:
        api_calls=1,
    conda:
        TEACHER_ENV
    log:
        "logs/teacher/{method}/{strategy}.log",
    shell:
        "python -m empathy_distill.teacher improve"
        ' --config-json "$EMPATHY_DISTILL_CONFIG"'
        " --cache-dir {params.cache_dir:q} --price-table {params.price_table:q}"
        " --cost-report {params.cost_report} --prompts {input.prompts:q}"
        " --method {wildcards.method} --strategy {wildcards.strategy}"
        " --sources {input.sources} --out {output} > {log} 2>&1"


rule cost:
    input:
        unpack(cost_inputs),
    output:
        "results/costs/projection.csv",
    params:
        config=json.dumps(config, sort_keys=True),
    conda:
        CORE_ENV
    log:
        "logs/costs/projection.log",
    shell:
        "python -m empathy_distill.cost --config-json {params.config:q}"
        " --train {input.train} --test {input.test}"
        " --improve-human-sources results/data/sources/improve_human.csv"
        " --output {output} > {log} 2>&1 && cat {log}"
