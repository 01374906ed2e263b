"""The command line (``validate``, ``describe``, ``upload``, ``status``) and its HTTP client
of the deployed API.

One module per subcommand, the helpers they share in :mod:`pacs_validator.cli.common`.
Imports :mod:`pacs_validator.dicom` and :mod:`pacs_validator.contract`; never the flow, the
AWS adapters, boto3 or botocore: ``upload`` and ``status`` work with the client extra alone.
"""
