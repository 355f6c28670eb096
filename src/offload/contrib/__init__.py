"""Adapters to other tools, each an ``offload.Middleware`` or a thin layer over one.

- ``offload.contrib.metrics``: Prometheus metrics (``offload[metrics]``).
- ``offload.contrib.otel``: OpenTelemetry tracing (``offload[otel]``).
- ``offload.contrib.django``: a backend of Django's tasks framework (``offload[django]``).

Each is optional; the core never imports this package (an import-linter rule).
"""
