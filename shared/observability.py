"""One logger and one metrics object per function process, configured by POWERTOOLS_* variables.

Tracing is done by Lambda itself (``Tracing: Active`` in template.yaml); the X-Ray SDK's Tracer is left out on
purpose because it costs ~0.15 s of cold start for spans we do not need yet.
"""

from __future__ import annotations

import os
import warnings

from aws_lambda_powertools import Logger, Metrics

# Most requests count nothing (a health check, a 404); Powertools warns on each such flush, which is only noise.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

logger = Logger()
# template.yaml sets the namespace; the default keeps a flush from failing every request wherever it is unset.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Hilo")
