"""Pick the transport for a serial and list reachable devices (``mnbench devices``).

* A serial that a running adb server lists goes through the server (:mod:`device_bench.adb_server`).
* ``host:port`` that the server does not list goes straight to adbd over TCP (:mod:`device_bench.adb_direct`).
* ``usb:`` or ``usb:<serial>``, or a serial when no adb server runs, goes straight to the device over USB
  (needs ``adb-shell[usb]``; a running adb server owns USB devices, so direct USB only works without one).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .adb_direct import AdbDirectTransport
from .adb_server import AdbServer, AdbServerTransport
from .errors import (AdbServerUnavailable, DeviceError, DeviceNotFound, DeviceOffline, DeviceUnauthorized,
                     UnknownSerial)
from .transport import DeviceEntry, Transport

logger = logging.getLogger(__name__)

_TCP_SERIAL = re.compile(r"^(?:\[(?P<ipv6>[0-9a-fA-F:.]+)\]|(?P<host>[A-Za-z0-9.\-]+)):(?P<port>\d{1,5})$")
USB_PREFIX = "usb:"


def parse_tcp_serial(serial: str) -> tuple[str, int] | None:
    """``(host, port)`` for a ``host:port`` / ``[v6]:port`` serial, else None."""
    match = _TCP_SERIAL.match(serial)
    if not match or not 0 < int(match["port"]) < 65536:
        return None
    return match["ipv6"] or match["host"], int(match["port"])


def _server_devices(server: AdbServer) -> list[DeviceEntry] | None:
    """The server's devices, or None when no server answers (not an error)."""
    try:
        return server.list_devices()
    except AdbServerUnavailable as error:
        logger.debug("no adb server: %s", error)
        return None


def open_transport(serial: str, *, server: AdbServer | None = None, **direct_options: Any) -> Transport:
    """Open a transport to ``serial`` (see the module docstring for the rules).

    Args:
        serial: as listed by ``adb devices``/``mnbench devices``, or ``host:port``, or ``usb:[serial]``.
        server: the adb server to ask; default :class:`AdbServer` (``$ANDROID_ADB_SERVER_PORT`` or 5037).
        **direct_options: passed to :class:`AdbDirectTransport` (``key_path``, ``auth_timeout_s``, ...).

    Raises:
        DeviceUnauthorized: listed as unauthorized, or the device did not accept our key.
        DeviceOffline: listed as offline.
        DeviceNotFound: nowhere to be found.
    """
    server = server or AdbServer()
    listed = _server_devices(server)
    entry = next((item for item in listed or [] if item.serial == serial), None)
    if entry is not None:
        return _through_server(entry, server)
    if serial.startswith(USB_PREFIX):
        return _direct_usb(serial[len(USB_PREFIX):] or None, direct_options)
    tcp = parse_tcp_serial(serial)
    if tcp is not None:
        transport = AdbDirectTransport.tcp(*tcp, **direct_options)
        transport.connect()
        return transport
    if listed is None:
        try:
            return _direct_usb(serial, direct_options)
        except DeviceNotFound as error:
            raise UnknownSerial(f"no adb server or USB phone has serial {serial!r}: no adb server answers at "
                                f"{server.host}:{server.port}, and direct USB found nothing ({error}); "
                                f"`mnbench devices` lists what is reachable") from error
        except DeviceError as error:  # direct USB is not available here: we cannot look on USB at all
            raise UnknownSerial(f"no adb server or USB phone has serial {serial!r}: no adb server answers at "
                                f"{server.host}:{server.port} (start one with `adb start-server`), and "
                                f"direct USB is unavailable here ({error}); `mnbench devices` lists what is "
                                "reachable") from error
    known = ", ".join(f"{item.serial} ({item.state})" for item in listed) or "none"
    raise UnknownSerial(f"no adb server or USB phone has serial {serial!r}: the adb server at "
                        f"{server.host}:{server.port} lists {known}; `mnbench devices` lists what is "
                        "reachable")


def _through_server(entry: DeviceEntry, server: AdbServer) -> Transport:
    if entry.state == "device":
        return AdbServerTransport(entry.serial, server=server)
    if entry.state in ("unauthorized", "authorizing"):
        raise DeviceUnauthorized(f"{entry.serial}: device unauthorized: unlock the phone and confirm "
                                 "'Allow USB debugging?' (tick 'Always allow'), then retry")
    if entry.state == "offline":
        raise DeviceOffline(f"{entry.serial}: device offline (replug it or run 'adb reconnect')")
    raise DeviceNotFound(
        f"{entry.serial}: the adb server lists it as {entry.state!r}, not ready for commands")


def _direct_usb(serial: str | None, options: dict[str, Any]) -> Transport:
    transport = AdbDirectTransport.usb(serial, **options)
    transport.connect()
    return transport


def list_reachable(*, server: AdbServer | None = None, include_usb: bool = True) -> list[DeviceEntry]:
    """Devices ``mnbench devices`` shows: the adb server's list, or USB devices when no server runs.

    USB devices found without a server are listed with state ``usb`` and the USB product string as model:
    they are not probed (probing would pop the authorization dialog on the phone).
    """
    listed = _server_devices(server or AdbServer())
    if listed is not None:
        return listed
    return _usb_devices() if include_usb else []


def _usb_devices() -> list[DeviceEntry]:
    try:
        from adb_shell.transport.usb_transport import UsbTransport
    except (ImportError, OSError) as error:
        logger.debug("no USB listing: %s", error)
        return []
    entries = []
    try:
        for usb in UsbTransport.find_all_adb_devices():
            try:
                serial = usb.serial_number
            except Exception:  # noqa: BLE001 - no permission on the device node
                serial = ""
            entries.append(DeviceEntry(serial=f"{USB_PREFIX}{serial}", state="usb",
                                       model=str(getattr(usb, "usb_info", "")).strip()))
    except Exception as error:  # noqa: BLE001 - libusb context errors: report nothing rather than crash
        logger.debug("USB listing failed: %s", error)
    return entries
