"""What route handlers are given: the server's hypervisor connection, runner and event bus."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from kvmhub.hv import Hypervisor
from kvmhub.server.auth import Caller
from kvmhub.server.bus import EventBus
from kvmhub.server.runner import CallerRunner, Runner


# async: plain lookups, not worth a thread hop each (FastAPI runs a sync dependency on a worker thread)
async def hypervisor(request: HTTPConnection) -> Hypervisor:
    hv: Hypervisor = request.app.state.hv
    return hv


async def runner(request: HTTPConnection, caller: Caller) -> CallerRunner:
    r: Runner = request.app.state.runner
    return CallerRunner(r, caller.name, request.app.state.hv)


async def bus(request: HTTPConnection) -> EventBus:
    b: EventBus = request.app.state.bus
    return b


Hv = Annotated[Hypervisor, Depends(hypervisor)]
Ops = Annotated[CallerRunner, Depends(runner)]
Bus = Annotated[EventBus, Depends(bus)]


async def server_runner(request: HTTPConnection) -> Runner:
    r: Runner = request.app.state.runner
    return r


Run = Annotated[Runner, Depends(server_runner)]
