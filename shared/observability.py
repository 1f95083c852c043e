"""One logger and one metrics object per function process, configured by POWERTOOLS_* variables.

Tracing is done by Lambda itself (``Tracing: Active`` in template.yaml); the X-Ray SDK's Tracer is left out on
purpose because it costs ~0.15 s of cold start for spans we do not need yet.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()
