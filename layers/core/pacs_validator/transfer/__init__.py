"""Talking to the deployed API as a client: declaring studies, sending their files through
presigned forms (resuming what an earlier run sent), following their status.

Standard library and pydicom only; shared by the command line and the gateway, neither of
which may import the other.
"""
