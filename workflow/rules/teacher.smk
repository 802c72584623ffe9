# Teacher LLM: initial responses, improve_llm sources, every improvement strategy, and the cost
# projection. API rules take one `api_calls` unit: run with `--resources api_calls=1` (the
# profiles set it) so parallel jobs never exceed the endpoint's own concurrency limit.
# Each job's config is its spec (params.spec); operational settings (concurrency, rate limits,
# retries, polling, budget) reach it through $EMPATHY_DISTILL_RUNTIME (common.smk), so tuning
# them never retrains 84 models from cached answers. Input functions: functions/teacher.smk.

# Input functions and specs of these rules.
include: "functions/teacher.smk"


TEACHER = config.get("teacher") or {}
TEACHER_COST_REPORT = "results/costs/teacher.csv"
# A local teacher (backend transformers, e.g. the demo's builtin:tiny) imports torch: with
# --sdm conda the rules running empathy_distill.distillation.teacher_cli then use the training
# environment.
TEACHER_ENV = "../../envs/train.yaml" if TEACHER.get("backend") == "transformers" else CORE_ENV


envvars: *llm_key_envvars([TEACHER] if TEACHER else [])


rule teacher_initial:
    input:
        train=TRAIN_CSV,
        test=TEST_CSV,
        prompts=PROMPTS,
        model=teacher_model_files(),
    output:
        initial="results/teacher/initial.jsonl",
        answers=grid.TEACHER_ANSWERS,
    params:
        spec=get_teacher_spec(),
        cost_report=TEACHER_COST_REPORT,
    resources:
        api_calls=1,
    conda:
        TEACHER_ENV
    # The teacher's rewrites gate most of the DAG (improved sets, their training): start them
    # as soon as they are ready rather than after other ready jobs.
    priority: 10
    log:
        "logs/teacher/initial.log",
    shell:
        "python -m empathy_distill.distillation.teacher_cli initial --spec {params.spec:q}"
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
        spec=specs.dumps(specs.build("improve_llm_sources", config)),
    conda:
        TEACHER_ENV
    # Seconds of work between the teacher's two jobs: without a priority it waited 229 s of
    # the demo for a core (2026-12-07), and the improve_llm chain with it
    priority: 10
    log:
        "logs/teacher/improve_llm_sources.log",
    shell:
        "python -m empathy_distill.distillation.teacher_cli llm-sources --spec {params.spec:q}"
        " --train {input.train} --initial {input.initial} --out {output} > {log} 2>&1"


rule teacher_improve:
    input:
        unpack(get_teacher_improve_input),
        model=teacher_model_files(),
    output:
        "results/teacher/{method}/{strategy}.jsonl",
    wildcard_constraints:
        method="improve_human|improve_llm",
        strategy=strategies.wildcard_regex(strategies.names(*strategies.TEACHER_CALL_KINDS)),
    params:
        spec=get_teacher_spec(),
        cost_report=TEACHER_COST_REPORT,
    resources:
        api_calls=1,
    conda:
        TEACHER_ENV
    # The teacher's rewrites gate most of the DAG (improved sets, their training): start them
    # as soon as they are ready rather than after other ready jobs.
    priority: 10
    log:
        "logs/teacher/{method}/{strategy}.log",
    shell:
        "python -m empathy_distill.distillation.teacher_cli improve --spec {params.spec:q}"
        " --cost-report {params.cost_report} --prompts {input.prompts:q}"
        " --method {wildcards.method} --strategy {wildcards.strategy}"
        " --sources {input.sources} --out {output} > {log} 2>&1"


rule cost:
    input:
        unpack(get_cost_input),
    output:
        "results/costs/projection.csv",
    params:
        spec=specs.dumps(specs.build("cost", config)),
        human=get_cost_human_arg,
        scorer_train=get_cost_scorer_train_arg,
        study_balanced=get_cost_study_balanced_arg,
    conda:
        CORE_ENV
    log:
        "logs/costs/projection.log",
    shell:
        "python -m empathy_distill.cost --spec {params.spec:q}"
        " --train {input.train} --test {input.test} {params.human} {params.scorer_train}"
        " {params.study_balanced}"
        " --output {output} > {log} 2>&1 && cat {log}"
