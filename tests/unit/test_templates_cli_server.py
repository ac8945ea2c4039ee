"""Warm templates in library mode and through the server: bad requests answer alike and change nothing.

libvirt's test driver has no host files, so a template cannot be made there: the refusals are what these tests can
see; making and using templates is tests/integration/test_warm_templates.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.unit.cli_server import Result, run, serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("server")) as address:
        yield address


def _same(server: str, *args: str, code: int) -> Result:
    local, remote = run("--local", *args), run("--remote", server, *args)
    assert local[0] == remote[0] == code, (local, remote)
    said = [[line for line in r[2].splitlines() if line.startswith("error:")] for r in (local, remote)]
    assert said[0] == said[1] != [], (local, remote)
    return remote


def test_a_host_without_reachable_files_refuses_templates_alike(server: str) -> None:
    for args in (("template", "ls"), ("template", "show", "t1"), ("template", "rm", "t1"),
                 ("template", "create", "t1", "--from", "test")):
        err = _same(server, *args, code=5)[2]
        assert "warm templates need a libvirt host whose files kvmhub reaches" in err


def test_create_from_a_template_refuses_what_the_template_fixes(server: str) -> None:
    err = _same(server, "create", "w1", "--template", "t1", "--image", "tiny", code=2)[2]
    assert "--template cannot be combined with --image" in err
    err = _same(server, "create", "w1", "--template", "t1", "--no-start", code=2)[2]
    assert "--template cannot be combined with --no-start" in err
    assert run("--remote", server, "ls", "--json")[1].count('"w1"') == 0


def test_hostile_template_names_are_refused_before_anything(client: TestClient) -> None:
    r = client.post("/api/v1/templates", json={"name": "../etc", "source": "test"})
    assert r.status_code == 400, r.text
    assert "invalid template name" in r.json()["error"]
    r = client.post("/api/v1/templates", json={"name": "t1", "source": "test", "extra": 1})
    assert r.status_code == 422
    r = client.post("/api/v1/vms", json={"name": "w1", "template": "t1", "image": "tiny"})
    assert r.status_code == 400, r.text
    assert "template cannot be combined with image" in r.json()["error"]
    assert client.get("/api/v1/vms/w1").status_code == 404
