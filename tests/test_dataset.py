from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pandas as pd
import pytest

from empathy_distill.dataset import download, load_dataset, validation_problems
from empathy_distill.errors import DatasetError


def test_real_dataset_is_valid(dataset):
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
