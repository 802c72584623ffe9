# Hugging Face weights, fetched before the jobs that load them (empathy_distill.core.hub_fetch): one
# local job per Hub model of the grid (empathy_distill.weights.grid_models), listed in
# localrules (compute nodes have no internet). It downloads the model's safetensors, config and
# tokenizer files at its pinned revision into the hub cache (models.cache_dir) with $HF_TOKEN from
# the environment, and writes results/weights/<owner>/<name>.json (model, commit, files, bytes).
# Every other job runs with HF_HUB_OFFLINE=1 (common.smk) and waits for the manifests of the
# models it loads (common.smk: model_files). Built-in models and local folders need no fetch.

# Input functions and specs of these rules.
include: "functions/models.smk"


rule fetch_model:
    output:
        "results/weights/{repo}.json",
    wildcard_constraints:
        repo=r"(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*",
    params:
        spec=get_fetch_spec,
    conda:
        "../../envs/train.yaml"  # huggingface_hub comes with transformers (train extra)
    log:
        "logs/weights/{repo}.log",
    benchmark:
        "results/benchmarks/weights/{repo}.tsv"
    shell:
        "HF_HUB_OFFLINE=0 python -m empathy_distill.core.hub_fetch fetch --spec {params.spec:q}"
        " --out {output:q} > {log} 2>&1"
