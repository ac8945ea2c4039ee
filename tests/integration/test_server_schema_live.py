"""Schemathesis against a real ``kvmhub serve`` on a private test host, over its unix socket.

Reads (every GET in the OpenAPI document) are called with generated valid requests aimed at objects that exist
there (a VM, the image, the images pool and its volumes, the lab network); every other operation is called with
generated *invalid* requests. No answer may be a server error or break its schema, and the invalid requests must
change nothing on the host. (Valid writes with generated bodies run over libvirt's test driver in the unit tests.)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.crash import differences, host_state
from tests.integration.test_server import Server, start_server

EXAMPLES = 12  # per operation: about 85 operations against a real libvirtd, a few minutes here
VM = "schema-vm"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
Operation = APIOperation[Any, Any, Any, Any]


class Live:
    def __init__(self, server: Server, operations: list[Operation], targets: dict[str, str]) -> None:
        self.server = server
        self.operations = operations
        self.targets = targets


@pytest.fixture(scope="module")
def live(prepared_host: TestHost, kvmhub: Runner) -> Iterator[Live]:
    r = kvmhub("create", VM, "--image", "tiny", "--memory", "128M", "--no-start")
    assert r.code == 0, r.err
    where = Path(tempfile.mkdtemp(prefix="kh-sch-"))
    server = start_server(prepared_host, where)
    try:
        schema = schemathesis.openapi.from_dict(server.client.get("http://kvmhub/openapi.json").json())
        operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
        volumes = server.client.get("/pools/kvmhub-images/volumes").json()
        targets = {"vm": VM, "network": LAB_NET, "image": "tiny", "pool": "kvmhub-images",
                   "volume": volumes[0]["name"]}
        yield Live(server, operations, targets)
    finally:
        server.stop()
        shutil.rmtree(where, ignore_errors=True)
        assert kvmhub("rm", VM).code == 0


def _existing(operation: Operation, targets: dict[str, str]) -> dict[str, str]:
    """Path parameters naming objects that exist on the host, for a read of ``operation``'s path."""
    path = operation.path.removeprefix("/api/v1")
    chosen: dict[str, str] = {}
    if path.startswith("/vms/{name}"):
        chosen["name"] = targets["vm"]
    elif path.startswith("/networks/{name}"):
        chosen["name"] = targets["network"]
    elif path.startswith("/images/{name}"):
        chosen["name"] = targets["image"]
    elif path.startswith("/pools/{pool}"):
        chosen["pool"] = targets["pool"]
        if "{name}" in path:
            chosen["name"] = targets["volume"]
    return chosen


def _send(server: Server, case: Case[Operation]) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url="http://kvmhub")
    data = kwargs.get("data")
    return server.client.request(kwargs["method"], kwargs["url"], params=kwargs.get("params") or None,
                                  headers={k: v for k, v in kwargs.get("headers", {}).items()
                                           if k.lower() not in ("connection", "accept-encoding")},
                                  json=kwargs.get("json") if "json" in kwargs else None,
                                  content=data if isinstance(data, (bytes, str)) else None, timeout=120)


def _run(live: Live, operation: Operation, mode: GenerationMode, path_parameters: dict[str, str]) -> int:
    calls = [0]

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None))
    @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))
    def call(case: Case[Operation]) -> None:
        response = _send(live.server, case)
        calls[0] += 1
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        case.validate_response(response, checks=CHECKS)

    call()
    return calls[0]


def test_reads_answer_as_their_schema_says(live: Live) -> None:
    reads = [op for op in live.operations if op.method.upper() == "GET"]
    assert len(reads) > 25
    called = {op.label: _run(live, op, GenerationMode.POSITIVE, _existing(op, live.targets)) for op in reads}
    assert all(called.values()), [label for label, n in called.items() if not n]


def test_invalid_writes_are_refused_and_change_nothing(live: Live, prepared_host: TestHost) -> None:
    before = host_state(prepared_host)
    writes = [op for op in live.operations if op.method.upper() != "GET"]
    assert len(writes) > 30
    called = 0
    for op in writes:
        try:
            called += _run(live, op, GenerationMode.NEGATIVE, {}) > 0
        except Unsatisfiable:  # nothing invalid to make of it: no body, no parameter with a constraint
            continue
    assert called > 30
    assert differences(before, host_state(prepared_host)) == ""
