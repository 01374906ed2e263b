"""pacs-validator: a DICOM study gatekeeper.

The subpackages are the architecture, and import-linter (``make lint``) holds them to a
one-way direction, each importing only what is below it:

- :mod:`~pacs_validator.cli` at the top: the command line with its HTTP client; it imports
  neither the flow, the AWS adapters nor boto3.
- :mod:`~pacs_validator.aws` and :mod:`~pacs_validator.gateway` below it: the adapters to
  AWS with the wiring the Lambda handlers use, and the DICOM gateway (a Storage SCP in front
  of the gate, which talks to the API like any client: no flow, no adapters, no boto3).
  Neither imports the other.
- :mod:`~pacs_validator.flow`: the pipeline, written against ports, free of any SDK.
- :mod:`~pacs_validator.dicom` and :mod:`~pacs_validator.contract` at the bottom: the DICOM
  code (pydicom only) and the names, keys, requests, states and views every side shares
  (standard library only). Neither imports the other.

``data/`` holds the rules, tag mappings and defaults that the code reads as data.
"""
