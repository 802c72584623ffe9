# Reference-based metrics (BLEU-1/2, ROUGE-L, distinct-1/2, MiniLM cosine) of every answer set
# of the grid against the human and the teacher responses. Needs no key and no GPU.
# Input functions and specs (params.spec): functions/reference_metrics.smk.

# Input functions and specs of these rules.
include: "functions/reference_metrics.smk"


rule reference_metrics:
    input:
        unpack(get_reference_metrics_input),
    output:
        report(
            "results/tables/reference_metrics.csv",
            caption="../report/reference_metrics.rst",
            category="Tables",
            labels={"table": "reference metrics"},
        ),
    params:
        spec=specs.dumps(specs.build("reference_metrics", config)),  # the manifest of its inputs
    threads: 2
    # sentence-transformers and torch (the MiniLM embeddings) are in the training environment
    conda:
        "../../envs/train.yaml"
    log:
        "logs/tables/reference_metrics.log",
    benchmark:
        "results/benchmarks/tables/reference_metrics.tsv"
    shell:
        "python -m empathy_distill.evaluation.reference_metrics --spec {params.spec:q}"
        " --test {input.test:q} --out {output:q} > {log} 2>&1"
