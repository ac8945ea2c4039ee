"""Where the time of one `kvmhub ls` goes, phase by phase, in a fresh interpreter (run by bench_list.py).

Replays what ``kvmhub ls`` does, with a clock around each phase, and prints one JSON object of
milliseconds: imports of the CLI, the extra imports ``ls`` makes, connecting, the libvirt listing calls,
building the VMInfo rows, rendering the table. Nothing is imported before the first clock starts.
Usage: ``python _ls_phases.py`` with ``KVMHUB_URI`` pointing at a host.
"""

from __future__ import annotations

import io
import json
import sys
import time


def main() -> None:
    marks: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        marks[name] = round((now - t) * 1000.0, 1)
        t = now

    import kvmhub.cli.main  # noqa: F401  # what the console script imports before any command runs

    lap("import kvmhub.cli.main")
    from kvmhub.cli import output, state
    from kvmhub.hv import domains as hv_domains
    from kvmhub.services.vm import lifecycle as vms
    from kvmhub.validate import format_size

    lap("imports made by ls")
    hv = state.hv()
    _ = hv.conn
    lap("connect (libvirt.open + keepalive, on a thread)")
    rows = hv_domains.bulk_stats(hv)
    lap(f"getAllDomainStats ({len(rows)} domains)")
    hv_domains.listing_flags(hv)
    lap("listAllDomains x2 (autostart, transient)")
    found = vms.list_vms(hv)
    lap("vms.list_vms (the calls above again + VMInfo rows)")
    real_stdout, sys.stdout = sys.stdout, io.StringIO()
    try:
        output.table(
            ["NAME", "STATE", "CPUS", "MEMORY", "IP", "AUTOSTART"],
            [(v.name, v.state, v.vcpus, format_size(v.memory_mib * 1024**2), ", ".join(v.ips), "") for v in found],
        )
    finally:
        sys.stdout = real_stdout
    lap("render the table")
    hv.close()
    lap("close the connection")
    print(json.dumps(marks))


if __name__ == "__main__":
    main()
