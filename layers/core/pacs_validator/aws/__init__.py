"""The AWS adapters: S3, DynamoDB, EventBridge and Lambda behind the flow's ports, the
clients they share, the function settings, the dead-letter redrive, the wiring the handlers
import, and what the handlers take from Powertools and Lambda's runtime (their tracer,
idempotency and SnapStart hooks).

The only modules that import boto3 or botocore; the SDK's errors leave them as the flow's
own (:mod:`pacs_validator.aws.errors`). May import everything below them; not the CLI.
"""
