# Input functions and specs of the rules in workflow/rules/gpu_smoke.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def get_gpu_smoke_student(wildcards=None):
    """The one student the smoke run measures (its throughput rows are per model)."""
    return gpu_smoke.measured_student(config)


def get_gpu_smoke_input():
    """Every other target: the summary reads the benchmark files of the whole finished DAG."""
    return [target for target in get_final_output() if target != GPU_SMOKE_JSON]
