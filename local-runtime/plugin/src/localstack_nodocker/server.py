"""LocalStack's twisted gateway server, listening only on the address it is given.

LocalStack serves its gateway with twisted or hypercorn. Twisted costs a quarter less of
LocalStack's CPU per request (measured with ``benchmarks/bench_e2e.py``: 121 against 78 to
92 ms of LocalStack CPU per stored instance, 7.4 against 9.4 to 11.3 instances/s), and
LocalStack is one process whose interpreter lock bounds the whole local pipeline. But its
twisted server ignores the host part of ``GATEWAY_LISTEN`` and listens on every interface
(``TCP4ServerEndpoint`` without an interface), which would open the emulator and its test
credentials to the network.

Nor does this server parse form bodies. Twisted reads every multipart POST (each presigned
upload, whole) into ``request.args`` with the email package, which LocalStack never reads,
and answers 400 itself to a body it cannot parse, where S3 would have given its own answer.
"""

from __future__ import annotations

from localstack import config
from localstack.aws.serving.twisted import TLSMultiplexerFactory
from localstack.runtime.server.twisted import TwistedRuntimeServer
from rolo.gateway import Gateway
from rolo.serving.twisted import TwistedGateway
from twisted.internet import endpoints, reactor, ssl
from twisted.web.http import Request


class QuietGateway(TwistedGateway):
    """LocalStack's twisted site without twisted's access log: each request's line was
    formatted and handed to a logger that shows it nowhere (LocalStack logs each AWS request
    itself), 2 % of LocalStack's CPU under the pipeline's load."""

    def log(self, request: Request) -> None:
        """Write no access log line."""


class LoopbackTwistedServer(TwistedRuntimeServer):
    """Twisted, bound to each ``GATEWAY_LISTEN`` host (127.0.0.1 for the local runtime)."""

    def register(self, gateway: Gateway, listen: list[config.HostAndPort],
                 ssl_creds: tuple[str, str] | None = None) -> None:
        """As LocalStack's own ``register`` (HTTP and HTTPS on one port), with the interface."""
        site = QuietGateway(gateway)
        site._parsePOSTFormSubmission = False  # Site(parsePOSTFormSubmission=False)
        factory = site
        if ssl_creds:
            cert_file_name, key_file_name = ssl_creds
            context = ssl.DefaultOpenSSLContextFactory(key_file_name, cert_file_name)
            context.getContext().use_certificate_chain_file(cert_file_name)
            factory = TLSMultiplexerFactory(context, False, site)
        for host_and_port in listen:
            endpoints.TCP4ServerEndpoint(reactor, host_and_port.port,
                                         interface=host_and_port.host).listen(factory)
