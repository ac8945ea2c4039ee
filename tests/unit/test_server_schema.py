"""Schemathesis against the whole app's live OpenAPI, in-process over libvirt's test driver: every operation
(those added later included) is called with generated requests, valid and not, and must answer without a 5xx
and as its schema says (status codes, content types, bodies).

The one 5xx allowed is 503 (libvirtd unavailable). What the test driver lacks (DHCP leases, volume streams,
volume resize) answers 409 ``hv.unsupported``, as test_server_unsupported.py shows. A request the schema
allows may still be refused with 400: what a name, a subnet or a pool's source must look like, and which
fields go together, is checked by the services and said in the answer, not expressed in the schema; so
schemathesis's "schema-valid request accepted" check is left out (every other check runs). Everything else
it changes (networks, pools, volumes, the test VM's state) is put back after the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import APIOperation, Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from kvmhub.hv import Hypervisor
from kvmhub.server.app import create_app
from kvmhub.server.settings import ServerSettings
from kvmhub.server.transport import Marked
from tests.unit.testdriver_state import URI, left_as_found

EXAMPLES = 50  # per operation: about 15 s for the whole app here, well under a minute


APP = Marked(create_app(ServerSettings(uri=URI, socket=None)), "unix")
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
Operation = APIOperation[Any, Any, Any, Any]
LOADED = list(SCHEMA.get_all_operations())
OPERATIONS: list[Operation] = [result.ok() for result in LOADED if isinstance(result, Ok)]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The app started (its hypervisor, runner and bus) with a state directory of its own, and the test driver
    put back as it was afterwards."""
    state: Path = tmp_path_factory.mktemp("schema-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KVMHUB_STATE_DIR", str(state))
        mp.setenv("KVMHUB_ACCEL", "tcg")  # GET /hosts/local must not boot a probe kernel here
        with left_as_found(), TestClient(APP):
            yield
        _test_vm_running()


def _test_vm_running() -> None:
    with Hypervisor(URI) as hv:
        dom = hv.conn.lookupByName("test")
        if dom.state()[0] == 3:  # paused
            dom.resume()
        elif not dom.isActive():
            dom.create()


def test_the_schema_holds_every_route() -> None:
    assert len(OPERATIONS) == len(LOADED), [r for r in LOADED if not isinstance(r, Ok)]
    labels = {op.label for op in OPERATIONS}
    assert {"PUT /api/v1/pools/{pool}/volumes/{name}/data", "GET /api/v1/metrics", "POST /api/v1/images",
            "DELETE /api/v1/vms/{name}/forwards/{which}", "GET /api/v1/vms"} <= labels


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_every_operation_answers_as_its_schema_says(started: None, operation: Operation) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))
    def call(case: Case[Operation]) -> None:
        response = case.call(timeout=30)  # vm-stats may sample for up to 10 s
        case.validate_response(response, excluded_checks=[not_a_server_error, positive_data_acceptance])
        assert response.status_code < 500 or response.status_code == 503, (case.method, case.formatted_path,
                                                                            response.text)

    call()
