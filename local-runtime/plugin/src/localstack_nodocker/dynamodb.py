"""DynamoDB on moto, in a process of its own: the backend LocalStack forwards to.

LocalStack runs DynamoDB Local as a separate server and forwards each DynamoDB request to it
(``localstack_nodocker.dynamodb_forwarding``); here that server is moto's DynamoDB, run with
``python -m localstack_nodocker.dynamodb``, which prints the port it listens on. Its CPU time
is its own: inside LocalStack, moto's DynamoDB shared one interpreter lock with every other
service, and the pipeline's status writes were a fifth of LocalStack's work.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import sys
import threading
import time
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

from localstack.utils.aws.request_context import extract_account_id_from_headers

LOG = logging.getLogger(__name__)

ACCOUNT_HEADER = "x-moto-account-id"
"""The account a request is for: set by LocalStack when it forwards one; a request that comes
straight from a function is given the account LocalStack would give it."""


class DynamoDBServer(ThreadingHTTPServer):
    """moto's DynamoDB answering one operation at a time, with the patches below.

    moto reads, changes and writes an item with no lock: two concurrent ``ADD received :one``
    could count once. DynamoDB makes every item write atomic; serving one operation at a
    time keeps that.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), DynamoDBRequestHandler)
        patch_transactions()
        patch_queries()
        patch_items()
        patch_action_lookup()
        from moto.dynamodb.responses import DynamoHandler

        self.handler = DynamoHandler
        self.lock = threading.Lock()

    def answer(self, body: bytes, headers: Message) -> tuple[int, dict[str, Any], bytes]:
        """moto's answer (status, headers, body) to one DynamoDB request."""
        request = SimpleNamespace(body=body, method="POST", headers=headers)
        with self.lock:
            try:
                status, answer_headers, answer = self.handler.dispatch(request, "http://dynamodb/",
                                                                       headers)
            except Exception:
                LOG.exception("moto's DynamoDB failed on %s", headers.get("X-Amz-Target"))
                status, answer_headers = 500, {"Content-Type": "application/x-amz-json-1.0"}
                answer = json.dumps({
                    "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                    "message": "the local DynamoDB failed: see LocalStack's log"})
        return status, answer_headers, answer.encode() if isinstance(answer, str) else answer


class DynamoDBRequestHandler(BaseHTTPRequestHandler):
    """DynamoDB's protocol is one POST per operation, named by ``X-Amz-Target``. Connections
    are kept open, and answers leave without waiting for Nagle's algorithm."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: DynamoDBServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if ACCOUNT_HEADER not in self.headers:
            self.headers[ACCOUNT_HEADER] = extract_account_id_from_headers(
                {"Authorization": self.headers.get("Authorization", "")})
        status, headers, answer = self.server.answer(body, self.headers)
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("status", "content-length", "connection"):
                self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """No line per request: LocalStack's own log says what was asked."""


def _exit_with(parent: int) -> None:
    """Stop when the process that started this one is gone (killed without a goodbye)."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main() -> None:
    """Serve on a free loopback port and print it, then serve until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    server = DynamoDBServer()
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    sys.stdout.write(f"{server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever()


def patch_action_lookup() -> None:
    """moto finds the method that answers an operation by inspecting every function of its
    response class, on every request: a tenth of a small operation's time here. The names
    do not change while the process runs, so each class is inspected once."""
    from moto.core import responses

    responses.method_names_from_class = functools.cache(responses.method_names_from_class)


class _TablesKept:
    """moto's ``copy`` module as its DynamoDB models see it, except that a table is not copied
    (see :func:`patch_transactions`)."""

    @staticmethod
    def deepcopy(value: Any) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value)


def patch_transactions() -> None:
    """TransactWriteItems at the cost of the items it writes, not of its tables.

    moto backs up every table a transaction names with a deep copy before it starts, to roll
    back on a cancellation. The status table holds every study's items, so on a stack that has
    run for a while each transaction (another upload of a file's name replaces its record in
    one) took seconds, and under the server's lock every other DynamoDB call of the
    pipeline waited for it. Here the items the transaction names are kept instead, and put
    back when moto raises.
    """
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend

    models.copy = _TablesKept  # type: ignore[assignment]
    transact = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        kept = _items_before(self, transact_items)
        try:
            transact(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in kept:
                if item is None:
                    table.delete_item(hash_value, range_value)
                elif range_value:
                    table.items[hash_value][range_value] = item
                else:
                    table.items[hash_value] = item
            raise

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _items_before(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(table, hash key, range key, a copy of the item or None) for each item the transaction
    names by a valid key; an operation whose key is not valid fails before it writes."""
    from moto.core.exceptions import JsonRESTError

    kept = []
    for entry in transact_items:
        _, operation = next(iter(entry.items()))
        table = backend.tables.get(operation.get("TableName"))
        if table is None:
            continue
        try:
            if "Item" in operation:
                key = {name: operation["Item"][name]
                       for name in (table.hash_key_attr, table.range_key_attr) if name}
            else:
                key = operation["Key"]
            hash_value, range_value = backend.get_keys_value(table, key)
            item = table.get_item(hash_value, range_value)
        except (KeyError, JsonRESTError):  # moto answers it with its own error
            continue
        kept.append((table, hash_value, range_value, copy.deepcopy(item)))
    return kept


class _PagesShared:
    """moto's ``copy`` module as its table model sees it, except that the items of a page a
    Query or Scan answers with are not copied (see :func:`patch_queries`)."""

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(value: Any) -> Any:
        from moto.dynamodb.models.dynamo_type import Item

        if isinstance(value, Item):
            return value
        if isinstance(value, list) and all(isinstance(item, Item) for item in value):
            return list(value)
        return copy.deepcopy(value)


def patch_queries() -> None:
    """A Query on a table's own key reads that key's items, not the whole table.

    moto's ``Table.query`` lists every item of the table, sorted, then keeps those with the
    queried hash key. The status table holds every study's items, and both the judge (the
    file records of the study it judges) and each status request query it, so on a stack that
    has run the e2e suite each query sorted tens of thousands of items while every other
    DynamoDB call waited behind the server's lock. Here, for the duration of one such
    query (under that lock), the table lists only the partition asked for; queries of an
    index still list the whole table, as moto's index lookup needs.

    moto also deep-copies every item of a page before answering, a guard against changing the
    stored items while the answer is made. Nothing changes them: the page's projections make
    new items, and the answer is serialised under the server's lock. A status request for an
    11-file study spent most of its DynamoDB time there (a file record holds dozens of nested
    findings); now the page holds the stored items themselves.
    """
    from moto.dynamodb.models import table as table_model
    from moto.dynamodb.models.table import Table

    table_model.copy = _PagesShared  # type: ignore[assignment]

    query = Table.query

    def query_partition(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name:
            return query(self, hash_key, *args, **kwargs)
        partition = self.items.get(hash_key)
        items = (list(partition.values()) if self.range_key_attr else [partition]) \
            if partition else []
        self.all_items = lambda: items  # type: ignore[method-assign]
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query_partition  # type: ignore[method-assign]


ITEM_SIZE_LIMIT = 405000
"""moto's limit on an item's size (``LimitedSizeDict``): DynamoDB's 400 KB, measured at
409 to 410 KB."""


def patch_items() -> None:
    """An item costs moto time in proportion to its size, not to its size times its
    attribute count.

    moto checks the 400 KB limit on every attribute it sets, by summing the size of the whole
    item again, and it sizes a map by rebuilding each of its values. Making an item (each
    PutItem), and each of the three deep copies an UpdateItem makes of it, set every
    attribute in turn, so the pipeline's items (a file record holds dozens of nested
    findings) were sized over and over under the server's lock. Here an item is sized
    once when it is made, a deep copy (which has the size of what it copies) is not sized,
    and a map's values are sized as they are. Setting one attribute, as an update
    expression does, is checked as before; the limit is the same.
    """
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    sized = DynamoType.size

    def size(self: DynamoType) -> int:
        if self.is_map():
            return sum(bytesize(key) + size_of(value) for key, value in self.value.items())
        if self.is_list():
            return sum(size_of(value) for value in self.value)
        return sized(self)

    def size_of(value: Any) -> int:
        return (value if type(value) is DynamoType else DynamoType(value)).size()

    def copy_value(self: DynamoType, memo: dict[int, Any]) -> DynamoType:
        copied = DynamoType.__new__(DynamoType)
        copied.type = self.type
        if self.is_map():
            copied.value = {key: copy_of(value, memo) for key, value in self.value.items()}
        elif self.is_list():
            copied.value = [copy_of(value, memo) for value in self.value]
        else:
            copied.value = copy.deepcopy(self.value, memo)
        return copied

    def copy_of(value: Any, memo: dict[int, Any]) -> Any:
        return copy_value(value, memo) if type(value) is DynamoType \
            else copy.deepcopy(value, memo)

    def copy_attributes(self: LimitedSizeDict, memo: dict[int, Any]) -> LimitedSizeDict:
        return LimitedSizeDict({key: copy_of(value, memo) for key, value in self.items()})

    def make_item(self: Item, hash_key: DynamoType, range_key: DynamoType | None,
                  attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        self.attrs = LimitedSizeDict({key: DynamoType(value) for key, value in attrs.items()})
        if sum(bytesize(key) + value.size() for key, value in self.attrs.items()) \
                > ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge

    DynamoType.size = size  # type: ignore[method-assign]
    DynamoType.__deepcopy__ = copy_value  # type: ignore[attr-defined]
    LimitedSizeDict.__deepcopy__ = copy_attributes  # type: ignore[attr-defined]
    Item.__init__ = make_item  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
