"""Print the requirements of the oldest-SDK CI step (.ci/oldest_sdks.sh), one per line.

Every core dependency of pyproject.toml as declared, except the provider SDKs (openai,
google-genai), which are pinned to their declared floor (the ``>=`` bound): the floors live in
pyproject.toml only, so this step always tests what the package promises. Nothing else is pinned,
so the rest resolves the way a user's fresh install would.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SDKS = ("openai", "google-genai")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_FLOOR = re.compile(r">=\s*([0-9][0-9A-Za-z.]*)")


def normalize(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def oldest_requirements(pyproject: Path) -> list[str]:
    """Core dependencies with each SDK pinned to its floor; a SDK without a floor is an error."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    requirements = []
    found = set()
    for requirement in dependencies:
        name = normalize(_NAME.match(requirement).group(1))
        if name in SDKS:
            floor = _FLOOR.search(requirement)
            if floor is None:
                raise SystemExit(
                    f"{pyproject}: [project].dependencies entry {requirement!r} has no '>='"
                    " floor; the oldest-SDK CI step needs one"
                )
            requirement = f"{name}=={floor.group(1)}"
            found.add(name)
        requirements.append(requirement)
    missing = sorted(set(SDKS) - found)
    if missing:
        raise SystemExit(f"{pyproject}: [project].dependencies lacks {', '.join(missing)}")
    return requirements


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
    print("\n".join(oldest_requirements(root / "pyproject.toml")))
