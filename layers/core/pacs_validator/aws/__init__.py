"""The AWS adapters: S3, DynamoDB, EventBridge and Lambda behind the flow's ports, the
function settings, the dead-letter redrive, and the wiring the handlers import.

The only modules that import boto3 or botocore; the SDK's errors leave them as the flow's
own (:mod:`pacs_validator.aws.errors`). May import everything below them; not the CLI.
"""
