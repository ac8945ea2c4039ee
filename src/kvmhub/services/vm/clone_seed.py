"""The NoCloud seed of a clone: the source's documents with a new instance-id and hostname."""

from __future__ import annotations

import io

import pycdlib
import yaml

from kvmhub.errors import InvalidInput, KvmhubError
from kvmhub.hv import storage as hv_storage
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services.vm.network_config import parse_network_config
from kvmhub.tools import yaml_lines
from kvmhub.tools.seed import build_nocloud_seed

SEED_LIMIT = 16 * 1024**2
SEED_FILES = ("meta-data", "user-data", "network-config", "vendor-data")


def read_seed(vol: hv_storage.Volume) -> dict[str, str]:
    """The NoCloud documents in a seed volume (read through libvirt, parsed with pycdlib)."""
    if vol.info().capacity > SEED_LIMIT:
        raise InvalidInput(f"seed volume {vol.name} is larger than a NoCloud seed can be")
    buf = io.BytesIO()
    vol.download(buf)
    buf.seek(0)
    iso = pycdlib.PyCdlib()
    found: dict[str, str] = {}
    try:
        iso.open_fp(buf)
        for name in SEED_FILES:
            for facet in ({"rr_path": f"/{name}"}, {"joliet_path": f"/{name}"},
                          {"iso_path": f"/{name.replace('-', '').upper()[:8]}.;1"}):
                out = io.BytesIO()
                try:
                    iso.get_file_from_iso_fp(out, **facet)
                except pycdlib.pycdlibexception.PyCdlibException:
                    continue
                found[name] = out.getvalue().decode("utf-8", errors="replace")
                break
    except pycdlib.pycdlibexception.PyCdlibException as exc:
        raise InvalidInput(f"seed volume {vol.name} is not a readable ISO", original=str(exc)) from None
    finally:
        try:
            iso.close()
        except pycdlib.pycdlibexception.PyCdlibException:
            pass
    return found


def _yaml_map(text: str) -> dict[str, object] | None:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return loaded if isinstance(loaded, dict) else None


def new_seed(docs: dict[str, str], name: str, instance_id: str, report: Reporter = QUIET) -> bytes:
    """A seed ISO from another VM's documents: a new instance-id and hostname, the rest as it was.

    A network-config that sets static addresses is left out (the clone takes DHCP): two VMs with one
    address would clash.
    """
    meta = _yaml_map(docs.get("meta-data", "")) or {}
    meta.update({"instance-id": instance_id, "local-hostname": name})
    user = docs.get("user-data", "")
    if user.startswith("#cloud-config"):
        doc = _yaml_map(user)
        if doc is not None:
            doc["hostname"] = name
            fqdn = doc.get("fqdn")
            if isinstance(fqdn, str) and "." in fqdn:
                doc["fqdn"] = f"{name}.{fqdn.split('.', 1)[1]}"
            user = "#cloud-config\n" + yaml_lines.dump(doc)
    elif not user:
        user = "#cloud-config\n" + yaml_lines.dump({"hostname": name})
    network_config = docs.get("network-config")
    if network_config is not None and _has_static_addresses(network_config):
        network_config = None
        report.warn("the source's network-config sets static addresses; the clone takes DHCP instead")
    return build_nocloud_seed(yaml_lines.dump(meta), user, network_config, docs.get("vendor-data"))


def _has_static_addresses(text: str) -> bool:
    try:
        return bool(parse_network_config(text, "the source's network-config").static_ipv4)
    except KvmhubError:
        return True  # unreadable: not worth the risk of a duplicate address



__all__ = ["new_seed", "read_seed"]
