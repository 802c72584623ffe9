"""Shared infrastructure every stage uses: the validated config (:mod:`.config`), the grid of
jobs (:mod:`.grid`), each job's spec (:mod:`.specs`) and the runtime part of the config that
reaches jobs outside their specs (:mod:`.runtime`), the paper's prompt texts (:mod:`.prompts`),
the strategy and judge registries (:mod:`.strategies`, :mod:`.judges`), the error types
(:mod:`.errors`), the CLI helper (:mod:`.command`), the one atomic file writer
(:mod:`.atomic`) and the JSON-lines and table readers (:mod:`.readers`)."""
