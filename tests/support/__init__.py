"""Helpers shared by every test tier (and the benchmarks): chain builders, strategies, test doubles,
the one predicate wait, service stacks, soak drivers. Must not: hold tests, or be imported by the
project's packages."""
