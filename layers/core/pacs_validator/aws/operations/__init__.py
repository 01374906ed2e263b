"""Operator tools: commands a person runs against a deployed stack, never a handler.

They need AWS credentials and boto3, so they live under :mod:`pacs_validator.aws` and not in
the command line (which never imports boto3); they import neither the handlers' runtime
nor its wiring, so running one loads no function's settings. Each is a module with a
``main`` for ``python -m``.
"""
