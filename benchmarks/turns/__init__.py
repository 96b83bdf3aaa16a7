"""The turn-taking timeline suite: scenarios as data, run on fakes in virtual time.

``python -m benchmarks.turns`` prints its figures; tests/test_turns_scenarios.py
asserts every scenario's outcome.
"""
