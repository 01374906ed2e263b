"""The contract every side shares: the API, the clients, the pipeline and the handlers.

Names and S3 keys, study ids, the upload request and the form renewal rule, the study's
states, the ``GET /status`` view, the lifecycle events, the events our functions send each
other, and the API's authentication rules. Standard library only; nothing of
``pacs_validator`` outside this package.
"""
