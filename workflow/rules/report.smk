# Result tables, figures and the Snakemake report (snakemake --report results/report.html).
# Input functions and specs (params.spec): functions/report.smk; the default targets
# (get_final_output, which report_html waits for) in common.smk.

# Input functions and specs of these rules.
include: "functions/report.smk"


rule win_rates:
    input:
        judgments=judge_job_records,
        answers=all_answers,
    output:
        report(
            "results/tables/win_rates.csv",
            caption="../report/win_rates.rst",
            category="Tables",
            labels={"table": "win rates"},
        ),
    params:
        spec=specs.dumps(specs.build("win_rates", config)),  # the manifest of its inputs
    conda:
        "../../envs/core.yaml"
    log:
        "logs/tables/win_rates.log",
    shell:
        "python -m empathy_distill.evaluation.tables win-rates --spec {params.spec:q}"
        " --judge-records {input.judgments:q} --out {output:q} > {log} 2>&1"


rule judge_agreement:
    input:
        judgments=judge_job_records,
        offline=offline_agreement_files,
    output:
        report(
            "results/tables/judge_agreement.csv",
            caption="../report/judge_agreement.rst",
            category="Tables",
            labels={"table": "judge agreement"},
        ),
    params:
        spec=specs.dumps(specs.build("judge_agreement", config)),  # the manifest of its inputs
        offline=get_offline_agreement_arg,
    conda:
        "../../envs/core.yaml"
    log:
        "logs/tables/judge_agreement.log",
    shell:
        "python -m empathy_distill.evaluation.tables judge-agreement --spec {params.spec:q}"
        " {params.offline} --judge-records {input.judgments:q} --out {output:q} > {log} 2>&1"


rule figure_heatmap:
    input:
        "results/tables/win_rates.csv",
    output:
        report(
            "results/figures/heatmap_{judge}.png",
            caption="../report/heatmap.rst",
            category="Figures",
            subcategory="{judge}",
            labels={"figure": "heatmap", "judge": "{judge}"},
        ),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/figures/heatmap_{judge}.log",
    shell:
        "python -m empathy_distill.evaluation.figures heatmap --table {input:q}"
        " --judge {wildcards.judge} --out {output:q} > {log} 2>&1"


rule figure_targeted_vs_naive:
    input:
        "results/tables/win_rates.csv",
    output:
        report(
            "results/figures/targeted_vs_naive_{judge}.png",
            caption="../report/targeted_vs_naive.rst",
            category="Figures",
            subcategory="{judge}",
            labels={"figure": "targeted strategies vs naive", "judge": "{judge}"},
        ),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/figures/targeted_vs_naive_{judge}.log",
    shell:
        "python -m empathy_distill.evaluation.figures targeted_vs_naive --table {input:q}"
        " --judge {wildcards.judge} --out {output:q} > {log} 2>&1"


rule figure_sft_vs_dpo:
    input:
        "results/tables/win_rates.csv",
    output:
        report(
            "results/figures/sft_vs_dpo_{judge}.png",
            caption="../report/sft_vs_dpo.rst",
            category="Figures",
            subcategory="{judge}",
            labels={"figure": "SFT vs SFT+DPO", "judge": "{judge}"},
        ),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/figures/sft_vs_dpo_{judge}.log",
    shell:
        "python -m empathy_distill.evaluation.figures sft_vs_dpo --table {input:q}"
        " --judge {wildcards.judge} --out {output:q} > {log} 2>&1"


rule example_answers:
    input:
        unpack(get_example_answers_input),
    output:
        table=report(
            "results/tables/example_answers.csv",
            caption="../report/example_answers.rst",
            category="Answers",
            labels={"table": "example answers (CSV)"},
        ),
        html=report(
            "results/tables/example_answers.html",
            caption="../report/example_answers.rst",
            category="Answers",
            labels={"table": "example answers"},
        ),
    params:
        dialogues=config["report"]["example_dialogues"],
    conda:
        CORE_ENV
    log:
        "logs/tables/example_answers.log",
    shell:
        "python -m empathy_distill.evaluation.examples --test {input.test:q}"
        " --answers {input.answers:q} --judge-records {input.judgments:q}"
        " --dialogues {params.dialogues} --csv {output.table:q} --html {output.html:q}"
        " > {log} 2>&1"


rule answer_lengths:
    input:
        unpack(get_answer_lengths_input),
    output:
        table=report(
            "results/tables/answer_lengths.csv",
            caption="../report/answer_lengths.rst",
            category="Answers",
            labels={"table": "answer lengths"},
        ),
        figure=report(
            "results/figures/answer_lengths.png",
            caption="../report/answer_lengths_figure.rst",
            category="Answers",
            labels={"figure": "answer lengths"},
        ),
    conda:
        CORE_ENV
    log:
        "logs/tables/answer_lengths.log",
    shell:
        "python -m empathy_distill.evaluation.lengths --test {input.test:q}"
        " --answers {input.answers:q} --table {output.table:q} --figure {output.figure:q}"
        " > {log} 2>&1"


rule figures:
    input:
        figure_files(),


# The self-contained HTML report as a product of the DAG (used by the demo): a nested
# `snakemake --report` over the same Snakefile, directory and final config. It waits for every
# other target of the grid, since `snakemake --report` refuses a report() file that is missing.
rule report_html:
    input:
        get_report_html_input(),
    output:
        config["report"]["path"],
    params:
        spec=specs.dumps(specs.build("report_html", config)),  # the job adds back $EMPATHY_DISTILL_RUNTIME
        snakefile=workflow.main_snakefile,
    conda:
        CORE_ENV
    log:
        "logs/report/report_html.log",
    shell:
        "python -m empathy_distill.evaluation.report_html --snakefile {params.snakefile:q}"
        " --spec {params.spec:q} --out {output:q} > {log} 2>&1"
