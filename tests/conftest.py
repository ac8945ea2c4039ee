"""Shared pytest fixtures: private libvirt test hosts.

Integration tests never touch the machine's own libvirt. They use a :class:`kvmhub.testing.TestHost`: a
``libvirtd`` + ``virtlogd`` pair in their own mount and network namespaces, reached over a private unix
socket.

Fixture ladder (STYLE.md): ``test_host`` → ``vm_defined`` → ``vm_booted``; nothing leaks past a test.

* ``test_host`` (session): one running host shared by the whole run. Point kvmhub at it with
  ``test_host.uri`` / ``test_host.env()``; run commands inside it with ``test_host.run([...])``.
* ``libvirt_conn``: a ``libvirt.virConnect`` to ``test_host``, closed after the test.
* ``host_factory``: extra hosts (``host_factory()``, ``host_factory(switch=sw)``) stopped after the test.

Every test using one of these is marked ``integration`` automatically, and skipped with a reason when the
machine cannot run a test host (not root, libvirtd or unshare missing). With ``KVMHUB_REQUIRE_INTEGRATION=1``
(set by ``.ci/run``) that skip is an error instead, so CI never passes on unit tests alone. A test that skips for
a kernel feature the host lacks (NFS client, device-mapper, sch_htb) still skips.
``KVMHUB_TEST_HOST_UNAVAILABLE=REASON`` makes the machine count as unable to run test hosts (to test the above).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kvmhub.testing import TestHost, missing_requirements

# one private operations journal and lock directory per test run: never the machine's /var/lib/kvmhub
os.environ.setdefault("KVMHUB_STATE_DIR", tempfile.mkdtemp(prefix="kvmhub-state-"))

_HOST_FIXTURES = {"test_host", "host_factory", "test_hosts_possible"}
REQUIRE_ENV = "KVMHUB_REQUIRE_INTEGRATION"
UNAVAILABLE_ENV = "KVMHUB_TEST_HOST_UNAVAILABLE"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regenerate-output",
        action="store_true",
        default=False,
        help="rewrite golden files (tests/unit/data/...) from the current code instead of comparing",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that (directly or through another fixture) needs a test host as ``integration``."""
    for item in items:
        if _HOST_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _skip_unless_hosts_possible() -> None:
    problems = missing_requirements()
    if reason := os.environ.get(UNAVAILABLE_ENV):
        problems.append(reason)
    if not problems:
        return
    why = "no private test host here: " + "; ".join(problems)
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{why} ({REQUIRE_ENV}=1: integration tests must run)", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def test_hosts_possible() -> None:
    """For tests that start test hosts of their own (benchmarks): skip, or fail under CI, as ``test_host`` does."""
    _skip_unless_hosts_possible()


@pytest.fixture(scope="session")
def test_host() -> Iterator[TestHost]:
    """One private libvirt host for the whole session, stopped (and all its processes killed) at the end."""
    _skip_unless_hosts_possible()
    host = TestHost().start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture
def libvirt_conn(test_host: TestHost) -> Iterator[Any]:
    """A ``libvirt.virConnect`` to ``test_host`` (tests only; kvmhub opens its own), closed afterwards."""
    conn = test_host.connect()
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def host_factory() -> Iterator[Callable[..., TestHost]]:
    """Start extra test hosts (``host_factory(switch=...)``); every one is stopped after the test."""
    _skip_unless_hosts_possible()
    hosts: list[TestHost] = []

    def make(**kwargs: Any) -> TestHost:
        host = TestHost(**kwargs)
        hosts.append(host)
        return host.start()

    try:
        yield make
    finally:
        errors = []
        for host in reversed(hosts):
            try:
                host.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


# ---------------------------------------------------------------------------------------------------------
# VM fixtures (vm_defined → vm_booted) go below this line. Build them on `test_host`; each must destroy and
# undefine what it creates in its own teardown.
# ---------------------------------------------------------------------------------------------------------
