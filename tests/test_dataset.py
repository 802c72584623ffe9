from __future__ import annotations

import hashlib
import http.server
import json
import threading
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from empathy_distill.core.errors import DatasetError
from empathy_distill.data.dataset import download, load_dataset, validation_problems


def test_real_dataset_is_valid(paper_dataset):
    dataset = paper_dataset
    assert dataset.shape == (2000, 32)
    assert dataset["dialog_id"].is_unique
    assert dataset["rating_human"].value_counts().to_dict() == {3: 986, 2: 672, 1: 342}


def _write(frame: pd.DataFrame, tmp_path, name="bad.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (
            lambda d: d.drop(columns=["rating_gemini_empathy"]),
            r"missing column\(s\) rating_gemini_empathy",
        ),
        (
            lambda d: d.assign(dialog_id=[d["dialog_id"][0]] * 2 + list(d["dialog_id"][2:])),
            r"column dialog_id: row\(s\) 1, 2 repeat values.*expected every value to be unique",
        ),
        (
            lambda d: d.assign(rating_llama_empathy=[4, *list(d["rating_llama_empathy"][1:])]),
            r"column rating_llama_empathy: row\(s\) 1 have \['4'\]; expected one of \[1, 2, 3\]",
        ),
        (
            lambda d: d.assign(response_human=["  ", *list(d["response_human"][1:])]),
            r"column response_human: row\(s\) 1 are empty; expected non-empty text",
        ),
    ],
    ids=["missing-column", "duplicate-id", "rating-4", "empty-response"],
)
def test_bad_dataset_fails_naming_file_column_rows(dataset, tmp_path, mutate, pattern):
    path = _write(mutate(dataset.head(20).copy()), tmp_path)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_problems_list_every_failure(dataset):
    bad = dataset.head(10).copy()
    bad.loc[3, "rating_human"] = 0
    bad.loc[5, "situation"] = ""
    problems = validation_problems(bad)
    assert len(problems) == 2


def test_missing_file_explains_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError, match="download_dataset"):
        load_dataset(tmp_path / "nope.csv")


@pytest.fixture
def file_server(tmp_path):
    (tmp_path / "data.csv").write_bytes(b"a,b\n1,2\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data.csv"
    server.shutdown()


def test_download_verifies_checksum(file_server, tmp_path):
    good = hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    out = tmp_path / "out" / "dataset.csv"
    download(file_server, good, out)
    assert out.read_bytes() == b"a,b\n1,2\n"


def test_download_with_wrong_checksum_deletes_file(file_server, tmp_path):
    out = tmp_path / "out" / "dataset.csv"
    with pytest.raises(DatasetError, match=r"sha256 is .* expected 0+; the download was deleted"):
        download(file_server, "0" * 64, out)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_empty_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "dataset.csv"
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"the file is empty \(0 bytes\)") as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_header_only_file_is_refused(dataset_path, tmp_path):
    path = tmp_path / "dataset.csv"
    path.write_text(dataset_path.read_text(encoding="utf-8").splitlines()[0] + "\n")
    with pytest.raises(DatasetError, match="only a header, no dialogue rows") as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def _cut(dataset_path, tmp_path, keep_lines: int, extra: str):
    """The first ``keep_lines`` lines of the synthetic file (header + rows), then ``extra``."""
    lines = dataset_path.read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / "dataset.csv"
    path.write_text("".join(lines[:keep_lines]) + extra, encoding="utf-8")
    return path, lines[keep_lines]


def test_file_cut_mid_row_says_truncated_with_the_line(dataset_path, tmp_path):
    # header + 9 rows (one line each in the synthetic file), then the first 5 fields of row 10
    path, row10 = _cut(dataset_path, tmp_path, 10, "")
    path.write_text(path.read_text() + ",".join(row10.split(",")[:5]), encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    assert str(path) in message
    assert "data row 10 (ending at line 11) has 5 of the header's 32 fields" in message
    assert "looks truncated" in message
    assert "empty" not in message  # not one "empty" error per missing column


def test_file_cut_inside_a_quoted_cell_says_truncated(dataset_path, tmp_path):
    path, row4 = _cut(dataset_path, tmp_path, 4, "")
    quote = row4.index('"')
    path.write_text(path.read_text() + row4[: quote + 8], encoding="utf-8")
    with pytest.raises(DatasetError, match=r"looks truncated: it ends at line 5 inside a quoted"):
        load_dataset(path)


def test_crlf_inside_cells_never_reaches_training_files(dataset, tmp_path):
    """A file saved on Windows: CRLF record ends and CRLF line breaks inside quoted cells."""
    from empathy_distill.data import commands as data
    from empathy_distill.distillation import build_sets

    frame = dataset.copy()
    frame["response_human"] = frame["response_human"] + "\r\nTake care."
    frame["speaker_uttr"] = frame["speaker_uttr"] + "\rReally."
    source = tmp_path / "windows.csv"
    frame.to_csv(source, index=False, lineterminator="\r\n")
    assert b'Take care."' in source.read_bytes() and b"\r\nTake care" in source.read_bytes()
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    assert (
        data.main(["split", "--dataset", str(source), "--train", str(train), "--test", str(test)])
        == 0
    )
    prompts = str(Path(__file__).resolve().parents[1] / "resources" / "prompts.json")
    sft, dpo = tmp_path / "sft.json", tmp_path / "dpo.json"
    argv = ["direct", "--train", str(train), "--strategy", "all", "--prompts", prompts]
    info, flag = tmp_path / "dataset_info.json", tmp_path / "leakage_check.ok"
    outputs = ["--sft", str(sft), "--dpo", str(dpo), "--info", str(info), "--leakage-ok", str(flag)]
    assert build_sets.main([*argv, *outputs, "--test", str(test)]) == 0
    for path in (train, test, sft, dpo):
        assert b"\r" not in path.read_bytes(), path
    records = json.loads(sft.read_text())
    assert any(r["messages"][1]["content"].endswith("\nTake care.") for r in records)
    assert all("\nReally." in r["messages"][0]["content"] for r in records)


def test_a_set_holding_a_test_dialogue_gets_no_flag_and_no_dataset_info(dataset, tmp_path):
    """The set-building job guards its own pair: given a "test split" that is its training
    split, every dialogue leaks, the command fails naming the file, and neither the leakage
    flag (which every training job waits for) nor the pair's dataset_info.json is written."""
    from empathy_distill.distillation import build_sets

    train = tmp_path / "train.csv"
    dataset.to_csv(train, index=False)
    prompts = str(Path(__file__).resolve().parents[1] / "resources" / "prompts.json")
    sft, info, flag = tmp_path / "sft.json", tmp_path / "dataset_info.json", tmp_path / "ok"
    argv = ["direct", "--train", str(train), "--strategy", "chatgpt", "--prompts", prompts]
    argv += ["--sft", str(sft), "--dpo", str(tmp_path / "dpo.json"), "--test", str(train)]
    assert build_sets.main([*argv, "--info", str(info), "--leakage-ok", str(flag)]) != 0
    assert not flag.exists() and not info.exists()
    assert sft.exists()  # written, then refused: Snakemake deletes a failed job's outputs
