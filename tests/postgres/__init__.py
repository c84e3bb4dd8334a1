"""Postgres-specific integration tests: what the shared contract suite cannot see."""
