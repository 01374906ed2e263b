"""The flow: receive a file, judge a study, store or reject it, recover from failures.

Written against the ``Protocol`` ports of :mod:`pacs_validator.flow.ports`; imports
:mod:`pacs_validator.dicom` and :mod:`pacs_validator.contract`, never boto3 or botocore.
"""
