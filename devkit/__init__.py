"""Helpers shared by the tests and the benchmarks: small estates built in code, throwaway PostgreSQL databases,
an ingest child process. Neither product nor tests: the product never imports it (import-linter contract
"no-tests"), it is not in the wheel (pyproject package discovery includes only the product's packages), and
``bench/`` takes these from here rather than from ``tests``."""
