# Input functions and specs of the rules in workflow/rules/scoring_offline.smk, which includes
# this file first. Functions that several rules files use are in workflow/rules/common.smk.

#: The study's files the offline models learn from (dialogues with MITI codes, subfactor scores).
OFFLINE_STUDY_FILES = (study_files.DIALOGUES, study_files.SUBFACTOR_SCORES)


def offline_subfactor_names():
    """Subfactors scorers with backend offline (trained by rule train_offline_subfactors)."""
    return [
        n for n, s in config["scoring"]["scorers"].items() if scoring_specs.is_offline_subfactors(s)
    ]


def offline_subfactor_regex():
    return "|".join(re.escape(n) for n in offline_subfactor_names()) or "(?!)"


def get_offline_subfactors_spec(wildcards):
    return specs.dumps(specs.build("train_offline_subfactors", config, wildcards.scorer))
