# Input functions and specs of the rules in workflow/rules/report.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def judge_job_records(wildcards=None):
    """What every judge job wrote (grid.JUDGE_JOB_FILES): the table rules' inputs. Their jobs
    read the judgment files their spec's manifest names; listing those 760 files as inputs made
    a quarter of the default grid's dry run."""
    return evaluation_specs.judge_job_records(config)


def get_offline_agreement_arg(wildcards, input):
    """``--offline-agreement <file>`` when the offline judge is in the grid, else nothing."""
    return f"--offline-agreement {shlex.quote(input.offline[0])}" if input.offline else ""


def offline_judge_selected():
    return bool(judges.scorer_judges(config, grid.judges(config), backend=judges.OFFLINE))


def offline_agreement_files(wildcards=None):
    offline = judges.SCORERS[judges.OFFLINE]
    return [offline.agreement_file] if offline_judge_selected() else []


def get_example_answers_input(wildcards):
    """Test split, every answer set and every judge job's record (the job reads the judgment
    files by path)."""
    return {"test": TEST_CSV, "answers": all_answers(), "judgments": judge_job_records()}


def get_answer_lengths_input(wildcards):
    """Test split (the human responses) and every answer set of the grid."""
    return {"test": TEST_CSV, "answers": all_answers()}


def get_report_html_input():
    """Every other target of the grid: `snakemake --report` includes each report() file of the
    DAG and stops at one that does not exist yet, so the report is the grid's last job."""
    last = {config["report"]["path"], GPU_SMOKE_JSON}
    return [target for target in get_final_output() if target not in last]
