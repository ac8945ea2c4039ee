"""NoCloud seed ISOs: the ``cidata`` disk cloud-init (and the tiny appliance) read at first boot.

The image is built in memory with pycdlib: ISO9660 level 3 with Joliet and Rock Ridge, so the file
names ``meta-data``, ``user-data``, ``network-config`` and ``vendor-data`` keep their exact spelling
whichever extension the guest reads.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pycdlib

from kvmhub.errors import InvalidInput, OperationFailed

__all__ = ["SEED_LABEL", "build_nocloud_seed", "write_nocloud_seed"]

SEED_LABEL = "cidata"

# ISO9660 level-1 names must be 8.3 upper case; these are the plain-ISO fallbacks.
_ISO_NAMES = {
    "meta-data": "/METADATA.;1",
    "user-data": "/USERDATA.;1",
    "network-config": "/NETWORKC.;1",
    "vendor-data": "/VENDORDA.;1",
}


def build_nocloud_seed(
    meta_data: str,
    user_data: str,
    network_config: str | None = None,
    vendor_data: str | None = None,
) -> bytes:
    """Return a NoCloud seed ISO (volume label ``cidata``) holding the given documents.

    ``meta_data`` and ``user_data`` are always written (an empty string gives an empty file, which
    cloud-init accepts); ``network_config`` and ``vendor_data`` only when given.
    """
    files: dict[str, str] = {"meta-data": meta_data, "user-data": user_data}
    if network_config is not None:
        files["network-config"] = network_config
    if vendor_data is not None:
        files["vendor-data"] = vendor_data
    for name, text in files.items():
        if not isinstance(text, str):
            raise InvalidInput(
                f"seed document {name} must be text, not {type(text).__name__}",
                hint="pass the YAML document as a str",
            )

    iso = pycdlib.PyCdlib()
    try:
        iso.new(
            interchange_level=3,
            vol_ident=SEED_LABEL,
            sys_ident="LINUX",
            app_ident_str="kvmhub",
            joliet=3,
            rock_ridge="1.09",
        )
        for name, text in files.items():
            data = text.encode("utf-8")
            iso.add_fp(
                io.BytesIO(data),
                len(data),
                _ISO_NAMES[name],
                rr_name=name,
                joliet_path=f"/{name}",
                file_mode=0o100444,
            )
        out = io.BytesIO()
        iso.write_fp(out)
    except pycdlib.pycdlibexception.PyCdlibException as exc:
        raise OperationFailed(
            "could not build the NoCloud seed ISO",
            cause="pycdlib refused the image layout",
            hint="check the installed pycdlib version (kvmhub needs >= 1.14)",
            original=str(exc),
        ) from exc
    finally:
        iso.close()
    return out.getvalue()


def write_nocloud_seed(
    path: str | os.PathLike[str],
    meta_data: str,
    user_data: str,
    network_config: str | None = None,
    vendor_data: str | None = None,
) -> Path:
    """Build a NoCloud seed ISO (see :func:`build_nocloud_seed`) and write it atomically to ``path``."""
    target = Path(path)
    data = build_nocloud_seed(meta_data, user_data, network_config, vendor_data)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".seed-", suffix=".iso", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OperationFailed(
            f"could not write the seed ISO to {target}",
            cause=exc.strerror or type(exc).__name__,
            hint=f"check that {target.parent} exists, is writable and has free space",
            original=str(exc),
        ) from exc
    return target
