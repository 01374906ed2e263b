"""The handlers' runtime: what a Lambda function runs on besides the adapters it calls.

Its settings (``config.json`` with environment overrides), the wiring that builds the
pipelines from them, its tracer, its once-per-event idempotency, and the hooks of Lambda's
runtime (SnapStart, the cold start). These modules are here, not beside the adapters,
because none of them stands behind a port of the flow: they exist only because a handler
runs inside Lambda. A handler imports them; an adapter never does, so the adapters stay
usable outside a function (the operator tools, the tests, the benchmarks).
"""
