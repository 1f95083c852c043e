"""Hilo's domain package: models, rules and adapters shared by every Lambda function."""

__version__ = "0.1.0"
