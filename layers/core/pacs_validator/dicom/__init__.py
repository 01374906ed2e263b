"""DICOM code: reading a file, the rule catalogue and its checks, an instance's and a study's
verdict, metadata, previews.

Imports pydicom (numpy and Pillow for previews only) and the standard library; nothing of
``pacs_validator`` outside this package, and nothing of AWS.
"""
