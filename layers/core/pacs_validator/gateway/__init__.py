"""The DICOM gateway: DICOM-native doors (DIMSE C-STORE, DICOMweb STOW-RS) in front of the
same gate.

A long-running process on the sender's side, not a Lambda. Each instance is judged by the
core's file-level rules before it is answered, and a success status is sent only once the
instance is durably in the spool (:mod:`~pacs_validator.gateway.spool`). It never imports
boto3 nor the flow: it talks to the deployed API like any client.
"""
