"""Generate ``workflow/schemas/llamafactory_args.json``: every argument ``llamafactory-cli train``
accepts, with the YAML value kinds it takes, read from the installed LLaMA-Factory.

Start-up validation of ``training.*`` keys reads the committed table instead of importing
LLaMA-Factory (its import takes ~13 s; ``snakemake -n`` must stay under 3 s). The table lists the
fields of the dataclasses LLaMA-Factory's train parser is built from
(``llamafactory.hparams.parser._TRAIN_ARGS``: ModelArguments, DataArguments, its TrainingArguments
subclass of transformers' Seq2SeqTrainingArguments, FinetuningArguments, GeneratingArguments).
A YAML config reaches them through ``HfArgumentParser.parse_dict``, which passes values to the
dataclasses unconverted, so a value must already have the field's type.

Regenerate after upgrading LLaMA-Factory or transformers::

    python -m empathy_distill.training.lf_args_table

``tests/test_training_config.py`` regenerates it and compares with the committed file.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from .. import REPO_ROOT

TABLE_PATH = REPO_ROOT / "workflow" / "schemas" / "llamafactory_args.json"


def value_kinds(annotation: Any) -> tuple[set[str], list | None]:
    """(YAML kinds a field of this type accepts, its allowed values or None)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        kinds: set[str] = set()
        choices: list | None = None
        for arg in typing.get_args(annotation):
            sub_kinds, sub_choices = value_kinds(arg)
            kinds |= sub_kinds
            if sub_choices is not None:
                choices = [*(choices or []), *sub_choices]
        return kinds, choices
    if origin is typing.Literal:
        values = list(typing.get_args(annotation))
        return {_kind(v) for v in values}, values
    if annotation is type(None):
        return {"null"}, None
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"str"}, sorted(str(m.value) for m in annotation)
    if annotation is bool:
        return {"bool"}, None
    if annotation is int:
        return {"int"}, None
    if annotation is float:
        return {"float", "int"}, None
    if annotation is str:
        return {"str"}, None
    if origin in (list, tuple, set) or annotation in (list, tuple, set):
        return {"list"}, None
    if origin is dict or annotation is dict:
        return {"dict", "str"}, None  # transformers also parses dict fields from JSON strings
    return {"any"}, None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def generate() -> dict:
    """The table of the installed packages (imports LLaMA-Factory: seconds)."""
    import llamafactory
    import transformers
    from llamafactory.hparams import parser

    arguments: dict[str, dict] = {}
    for cls in parser._TRAIN_ARGS:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if not field.init:
                continue
            kinds, choices = value_kinds(hints.get(field.name, Any))
            entry: dict[str, Any] = {"class": cls.__name__, "kinds": sorted(kinds)}
            if choices is not None:
                entry["choices"] = [c for c in choices if c is not None]
            arguments[field.name] = entry
    return {
        "generated_by": "python -m empathy_distill.training.lf_args_table",
        "llamafactory": llamafactory.__version__,
        "transformers": transformers.__version__,
        "arguments": dict(sorted(arguments.items())),
    }


def render(table: dict) -> str:
    return json.dumps(table, indent=1, sort_keys=False) + "\n"


def load_table(path: Path = TABLE_PATH) -> dict:
    """The committed table (no LLaMA-Factory import)."""
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    out = Path(argv[0]) if argv else TABLE_PATH
    table = generate()
    out.write_text(render(table), encoding="utf-8")
    print(
        f"wrote {out}: {len(table['arguments'])} arguments of llamafactory {table['llamafactory']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
