# The gpu-smoke profile's last job (docs/gpu.md "The smoke run"): package versions, the GPU's
# name, every rule's wall time (its benchmark: file) and the training and generation tokens/s of
# the finished DAG, in results/gpu_smoke.json. Input functions: functions/gpu_smoke.smk.

# Input functions and specs of these rules.
include: "functions/gpu_smoke.smk"


rule gpu_smoke_summary:
    input:
        get_gpu_smoke_input(),
    output:
        GPU_SMOKE_JSON,
    params:
        student=get_gpu_smoke_student,
        model_id=lambda wildcards: config["students"][get_gpu_smoke_student()]["model"],
    # the versions it records are those of the GPU jobs' environment (torch, LLaMA-Factory)
    conda:
        "../../envs/train.yaml"
    log:
        "logs/gpu_smoke.log",
    shell:
        "python -m empathy_distill.evaluation.gpu_smoke --results results"
        " --student {params.student:q} --model-id {params.model_id:q}"
        " --out {output:q} > {log} 2>&1"
