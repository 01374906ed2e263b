"""The AWS adapters: S3, DynamoDB, EventBridge and Lambda behind the flow's ports, the
clients they share, and the one place the SDK's errors become the flow's
(:mod:`pacs_validator.aws.errors`).

Two rooms sit above them and are not adapters: :mod:`~pacs_validator.aws.runtime`, what a
handler runs on (its settings, wiring, tracer, idempotency, SnapStart and cold-start hooks),
and :mod:`~pacs_validator.aws.operations`, the tools an operator runs by hand. Both may
import the adapters; no adapter imports either (import-linter says so).

The only modules of the package that import boto3 or botocore. May import everything below
them; not the CLI.
"""
