"""Smoke tests of the benchmark scripts: they parse their arguments, run end to end on the tiny
model / local server and end with their machine-readable line. No timing is asserted (the figures
are the benchmarks' job, printed, not tested)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / "tests" / "data" / "synthetic_dataset.csv"


def load(name: str):
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", REPO / "benchmarks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does (a dataclass looks its module up)
    spec.loader.exec_module(module)
    return module


def test_generation_tiny_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    generation = load("generation")
    argv = ["--tiny", "--dataset", str(SYNTHETIC), "--n", "4", "--max-new-tokens", "8"]
    assert generation.main([*argv, "--repeats", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"ratio=\d+\.\d\d identical=true", out[-1])
    assert "identical greedy answers: 4/4" in out
    # both sides ran --repeats times, alternating
    assert [line.split()[2].rstrip(":") for line in out if line.startswith("  run ")] == [
        "batched",
        "one-at-a-time",
    ] * 2
    assert any(line.startswith("load average before") for line in out)
    step = next(line for line in out if line.startswith("decode step"))
    one, many, ceiling = re.fullmatch(
        r"decode step \(best of 20\): batch 1 ([\d.]+) ms, batch 4 ([\d.]+) ms; "
        r"batching's ceiling on decoding: ([\d.]+)x",
        step,
    ).groups()
    assert float(ceiling) == pytest.approx(4 * float(one) / float(many), rel=0.05, abs=0.02)


def test_generation_rejects_bad_arguments() -> None:
    generation = load("generation")
    with pytest.raises(SystemExit):
        generation.parse_args(["--repeats", "0"])
    with pytest.raises(SystemExit):
        generation.parse_args(["--tiny", "--model-path", "x"])


def test_teacher_throughput_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    teacher = load("teacher_throughput")
    argv = ["--n", "8", "--latency", "0.01", "--concurrency", "4", "--repeats", "2"]
    assert teacher.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"ratio=\d+\.\d\d bound_fraction=\d+\.\d{3}", out[-1])
    runs = [line for line in out if line.startswith("  run ")]
    assert len(runs) == 2 and all("concurrent" in r and "one-at-a-time" in r for r in runs)
    assert any("one-at-a-time loop:" in line and "best of 2" in line for line in out)


def test_training_rejects_dpo_without_sft_and_bad_set() -> None:
    training = load("training")
    with pytest.raises(SystemExit):
        training.parse_args(["--stages", "dpo"])
    with pytest.raises(SystemExit):
        training.parse_args(["--set", "no_equals_sign"])
    args = training.parse_args(["--set", "lora_rank=16", "--set", "use_cpu=false"])
    assert args.set == [("lora_rank", 16), ("use_cpu", False)]


def test_training_config_passes_precision_and_extra_args() -> None:
    training = load("training")
    args = training.parse_args(["--steps", "3", "--batch-size", "2", "--set", "lora_rank=4"])
    config = training.training_config(args, Path("m"), "llama3", bf16=True)
    common = config["training"]["common"]
    assert common["max_steps"] == 3 and common["per_device_train_batch_size"] == 2
    assert common["bf16"] is True and common["use_cpu"] is True and common["lora_rank"] == 4
    assert common["include_num_input_tokens_seen"] == "non_padding"
    from empathy_distill.training.llamafactory_config import validate_training

    validate_training(config)  # every key is a LLaMA-Factory argument of the right type


def test_training_device_cuda_turns_use_cpu_off() -> None:
    training = load("training")
    config = training.training_config(
        training.parse_args(["--device", "cuda"]), Path("m"), "llama3", bf16=True
    )
    assert config["training"]["common"]["use_cpu"] is False
    assert training.parse_args([]).device == "cpu"


@pytest.mark.slow
def test_training_tiny_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Real llamafactory-cli, SFT then DPO, one step of two examples (about a minute)."""
    training = load("training")
    argv = ["--tiny", "--dataset", str(SYNTHETIC), "--steps", "1", "--batch-size", "2"]
    assert training.main([*argv, "--precision", "fp32", "--keep", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"sft_fp32_tokens_per_s=\d+\.\d dpo_fp32_tokens_per_s=\d+\.\d", out[-1])
    # the trainer's token count equals the template's count of the same examples
    assert not any("template count" in line for line in out)
    assert (tmp_path / "fp32" / "dpo" / "train.yaml").is_file()


#: A report as pytest --junitxml writes one (xdist: one <testsuite>, classname = the dotted module).
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="5">
<testcase classname="tests.test_demo" name="test_demo_runs" time="600.250"/>
<testcase classname="tests.test_llm_cache" name="test_a[x]" time="1.500"/>
<testcase classname="tests.test_llm_cache" name="test_b" time="2.000">
<skipped type="pytest.skip" message="no dataset">tests/test_llm_cache.py:9: no dataset</skipped>
</testcase>
<testcase classname="tests.test_llm_cache.TestOpen" name="test_c" time="0.500"/>
<testcase classname="tests.test_prompts" name="test_fill" time="0.010"/>
</testsuite></testsuites>
"""


def test_suite_times_sums_each_file_and_lists_the_slowest(tmp_path, capsys) -> None:
    suite_times = load("suite_times")
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT)
    tests = suite_times.read_junit(report)
    assert len(tests) == 5
    # the class's test belongs to its module's file; sums worked out by hand from JUNIT above
    assert suite_times.per_file(tests) == [
        ("tests/test_demo.py", 1, 600.25),
        ("tests/test_llm_cache.py", 3, 4.0),
        ("tests/test_prompts.py", 1, 0.01),
    ]
    assert suite_times.main([str(report), "--tests", "2"]) == 0
    out = capsys.readouterr().out
    assert "5 tests, 604.3 s of test time" in out
    assert "tests/test_llm_cache.py" in out and "0.7%" in out  # 4.0 of 604.26
    slowest = out.split("slowest tests:")[1].strip().splitlines()
    assert [line.split("  ")[-1] for line in slowest] == [
        "tests/test_demo.py::test_demo_runs",
        "tests/test_llm_cache.py::test_b",
    ]


def test_suite_times_fails_on_a_skip_outside_the_allowed_files(tmp_path, capsys) -> None:
    suite_times = load("suite_times")
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT)
    assert [t.skipped for t in suite_times.read_junit(report)] == [
        None,
        None,
        "no dataset",
        None,
        None,
    ]
    assert suite_times.main([str(report), "--allow-skips", "tests/test_llm_cache.py"]) == 0
    assert suite_times.main([str(report)]) == 0  # without the option, skips are not checked
    capsys.readouterr()
    assert suite_times.main([str(report), "--allow-skips", "tests/test_reference_texts.py"]) == 1
    err = capsys.readouterr().err
    assert "skipped: tests/test_llm_cache.py::test_b: no dataset" in err
    assert "1 tests skipped outside tests/test_reference_texts.py" in err


def test_suite_times_names_a_file_that_is_not_a_report(tmp_path) -> None:
    suite_times = load("suite_times")
    bad = tmp_path / "junit.xml"
    bad.write_text("not xml")
    with pytest.raises(SystemExit, match=r"junit\.xml: not a readable JUnit XML"):
        suite_times.main([str(bad)])
