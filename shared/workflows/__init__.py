"""Workflows: multi-day journeys across channels, written as data (``shared/catalog/workflows/*.yaml``).

``language`` is the contract: the models a workflow file is checked against, what its conditions and waits mean, and
the pure helpers the engine (enrolments, the step function, timers) runs them with. ``catalog`` loads the shipped
files. See ``docs/workflows.md``.
"""
