"""Query parameters a route does not take are refused, not ignored: ``DELETE /vms/x?keep_disk=true`` (a typo of
``keep_disks``) would otherwise delete the disks the caller meant to keep."""

from __future__ import annotations

from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from starlette.requests import HTTPConnection

_known: dict[int, frozenset[str]] = {}  # route id -> the query parameters it declares (its dependencies' too)


async def known_query(conn: HTTPConnection) -> None:  # async: no thread hop for a check this small
    """Refuse (422 ``input.invalid``) a request naming a query parameter its route does not declare."""
    if conn.scope.get("type") != "http" or not conn.query_params:
        return
    route = conn.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _known.get(id(route))
    if known is None:
        known = _known[id(route)] = frozenset(_declared(dependant))
    unknown = sorted(set(conn.query_params) - known)
    if unknown:
        raise RequestValidationError([{"loc": ("query", unknown[0]), "type": "extra_forbidden",
                                       "msg": "this route takes no such query parameter"
                                              + (f" (it takes: {', '.join(sorted(known))})" if known else "")}])


def _declared(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared(sub)
    return names
