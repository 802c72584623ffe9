"""``python -m empathy_distill.cost`` (the cost rule)."""

from .command import main

if __name__ == "__main__":
    raise SystemExit(main())
