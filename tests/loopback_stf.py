"""A loopback DeviceFarmer STF (127.0.0.1 only, threads in the test process) in front of loopback phones.

It answers the API v1 requests mnbench makes with the bodies and status codes of STF's own controllers
(DeviceFarmer/stf c7b928f: ``lib/units/api/controllers/user.js``, ``devices.js``, ``helpers/
securityHandlers.js``, ``lib/util/apiutil.js``; see :mod:`device_bench.stf`). A remote connect starts a TCP
bridge on 127.0.0.1 to the phone's loopback adbd, as STF's provider bridges its port to the phone
(``lib/units/device/plugins/connect.js``); every chunk the client sends through it is activity that resets
the lease's idle timer, and a lease idle for its timeout is released (``automatic_timeout``).

State for tests: :attr:`LoopbackStf.taken`, :attr:`released`, :attr:`expired` and :attr:`revoked` count
leases, :meth:`held` lists the phones the test user holds now, :attr:`requests` records ``(method, path,
status)`` (never a header), :attr:`faults` maps ``(METHOD, path)`` to a ``(status, description)`` to answer
instead, :meth:`revoke` takes a phone away as an admin would.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import pytest

USER = {"email": "bench@example.org", "name": "bench", "privilege": "user", "group": "g-bench"}
OTHER = {"email": "alice@example.org", "name": "alice", "group": "g-alice"}
DEFAULT_TIMEOUT_MS = 900_000    # ``stf provider --group-timeout 900`` (seconds), as the device unit gets it


@dataclass
class FarmPhone:
    """One phone of the farm: its STF document and the loopback adbd (``host:port``) behind it."""

    doc: dict
    adbd: str | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    last_activity_s: float = 0.0
    bridge: "_Bridge | None" = None
    activity: int = 0


def phone_doc(serial: str, model: str = "Pixel 7", abi: str = "arm64-v8a", sdk: str = "34",
              manufacturer: str = "Google", provider: str = "rack-1", owner: dict | None = None) -> dict:
    """A device document with the fields STF stores (``lib/db/api.js`` saveDeviceIdentity and
    saveDeviceInitialState)."""
    return {"serial": serial, "present": True, "ready": True, "owner": owner, "model": model,
            "manufacturer": manufacturer, "abi": abi, "sdk": sdk, "version": "14", "platform": "Android",
            "product": model.lower().replace(" ", "_"), "marketName": model, "operator": None,
            "provider": {"name": provider, "channel": f"ch-{provider}"}, "status": 3, "using": False,
            "remoteConnect": False, "remoteConnectUrl": None, "usage": None}


class LoopbackStf:
    """The farm's state and address; see the module docstring."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.phones: dict[str, FarmPhone] = {}
        self.taken = self.released = self.expired = self.revoked = 0
        self.adb_keys: list[dict] = []
        self.requests: list[tuple[str, str, int]] = []
        self.faults: dict[tuple[str, str], tuple[int, str]] = {}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                state._serve(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                state._serve(self, "POST")

            def do_DELETE(self) -> None:  # noqa: N802
                state._serve(self, "DELETE")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._stopped = threading.Event()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._expire_idle, daemon=True).start()

    # ------------------------------------------------------------------------------------ test API
    def add(self, serial: str, adbd: str | None = None, **fields) -> FarmPhone:
        phone = FarmPhone(phone_doc(serial, **fields), adbd)
        self.phones[serial] = phone
        return phone

    def held(self) -> list[str]:
        """Serials the test user holds now."""
        with self.lock:
            return sorted(serial for serial, phone in self.phones.items()
                          if (phone.doc["owner"] or {}).get("email") == USER["email"])

    def wait(self, condition, timeout_s: float = 60.0, what: str = "") -> None:
        """Wait until ``condition()`` is true (re-checked on every request and lease change)."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"the loopback STF did not see {what or condition} in {timeout_s} s")
                self.changed.wait(min(remaining, 0.5))

    def revoke(self, serial: str) -> None:
        """An admin takes the phone away: the owner goes, the remote-connect bridge closes."""
        with self.lock:
            self._ungroup(self.phones[serial])
            self.revoked += 1

    def stop(self) -> None:
        self._stopped.set()
        self.server.shutdown()
        self.server.server_close()
        for phone in self.phones.values():
            if phone.bridge:
                phone.bridge.close()

    # ------------------------------------------------------------------------------------ HTTP
    def _serve(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"{}") if length else {}
        with self.lock:
            status, answer = self._answer(method, path, handler.headers.get("Authorization"), body)
            self.requests.append((method, path, status))
            self.changed.notify_all()
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, method: str, path: str, auth: str | None, body: dict) -> tuple[int, dict]:
        # securityHandlers.accessTokenAuth
        if not auth:
            return 401, {"success": False, "description": "Requires Authentication"}
        scheme, _, token = auth.partition(" ")
        if scheme != "Bearer":
            return 401, {"success": False,
                         "description": 'Authorization header should be in "Bearer $AUTH_TOKEN" format'}
        if token != self.token:
            return 401, {"success": False, "description": "Bad Credentials"}
        if (method, path) in self.faults:
            status, description = self.faults[(method, path)]
            return status, {"success": False, "description": description}
        parts = path.removeprefix("/api/v1/").split("/")
        if parts == ["user"] and method == "GET":
            return 200, {"success": True, "user": USER}
        if parts == ["user", "adbPublicKeys"] and method == "POST":
            self.adb_keys.append(body)
            return 200, {"success": True}
        if parts == ["devices"] and method == "GET":
            return 200, {"success": True, "description": "Devices Information",
                         "devices": [self._normalized(phone) for phone in self.phones.values()]}
        if len(parts) == 2 and parts[0] == "devices" and method == "GET":
            phone = self.phones.get(parts[1])
            if phone is None:
                return 404, {"success": False, "description": "Device not found"}
            return 200, {"success": True, "description": "Device Information",
                         "device": self._normalized(phone)}
        if parts == ["user", "devices"] and method == "POST":
            return self._add(body)
        if len(parts) >= 3 and parts[:2] == ["user", "devices"]:
            phone = self.phones.get(parts[2])
            if phone is None:
                return 404, {"success": False, "description": "Device not found"}
            tail = parts[3:]
            if tail == [] and method == "DELETE":
                return self._delete(phone)
            if tail == ["remoteConnect"]:
                return self._remote(phone, method)
        return 404, {"success": False, "description": "Not Found"}

    def _normalized(self, phone: FarmPhone) -> dict:
        """datautil.normalize: ``using`` for our phones, remote connect hidden from others."""
        doc = dict(phone.doc)
        mine = (doc["owner"] or {}).get("email") == USER["email"]
        doc["using"] = bool(doc["owner"]) and mine
        if not mine:
            doc["remoteConnect"], doc["remoteConnectUrl"] = False, None
        return doc

    def _add(self, body: dict) -> tuple[int, dict]:
        phone = self.phones.get(body.get("serial"))
        if phone is None:                                        # apiutil.computeStats: skipped
            return 404, {"success": False, "description": "Not Found (device)"}
        doc = phone.doc
        if not (doc["present"] and doc["ready"] and not doc["owner"]):  # deviceutil.isAddable
            return 403, {"success": False, "description": "Device is being used or not available"}
        doc["owner"] = {key: USER[key] for key in ("email", "name", "group")}
        phone.timeout_ms = int(body.get("timeout") or DEFAULT_TIMEOUT_MS)
        phone.last_activity_s = time.monotonic()
        self.taken += 1
        return 200, {"success": True, "description": "Device successfully added"}

    def _owned(self, phone: FarmPhone) -> bool:                    # deviceutil.isOwnedByUser
        doc = phone.doc
        return bool(doc["present"] and doc["ready"] and doc["owner"]
                    and doc["owner"]["email"] == USER["email"])

    def _delete(self, phone: FarmPhone) -> tuple[int, dict]:
        if not self._owned(phone):
            return 403, {"success": False, "description": "You cannot release this device. Not owned by you"}
        self._ungroup(phone)
        self.released += 1
        return 200, {"success": True, "description": "Device successfully removed"}

    def _remote(self, phone: FarmPhone, method: str) -> tuple[int, dict]:
        if not self._owned(phone):
            return 403, {"success": False, "description": "Device is not owned by you or is not available"}
        if method == "DELETE":
            if phone.bridge:
                phone.bridge.close()
                phone.bridge = None
            phone.doc["remoteConnect"], phone.doc["remoteConnectUrl"] = False, None
            return 200, {"success": True, "description": "Device remote disconnected successfully"}
        if phone.adbd is None:
            return 504, {"success": False, "description": "Device is not responding"}
        if phone.bridge is None:
            phone.bridge = _Bridge(phone.adbd, lambda: self._activity(phone))
        phone.doc["remoteConnect"], phone.doc["remoteConnectUrl"] = True, phone.bridge.address
        return 200, {"success": True, "description": "Remote connection is enabled",
                     "remoteConnectUrl": phone.bridge.address}

    # ------------------------------------------------------------------------------------ leases
    def _activity(self, phone: FarmPhone) -> None:
        with self.lock:
            phone.last_activity_s = time.monotonic()
            phone.activity += 1

    def _ungroup(self, phone: FarmPhone) -> None:
        phone.doc["owner"] = None
        phone.doc["remoteConnect"], phone.doc["remoteConnectUrl"] = False, None
        if phone.bridge:                      # connect.js: group.on('leave', plugin.stop)
            phone.bridge.close()
            phone.bridge = None
        self.changed.notify_all()

    def _expire_idle(self) -> None:
        """channelmanager.js: a group channel idle for its timeout is released."""
        while not self._stopped.wait(0.05):
            with self.lock:
                now = time.monotonic()
                for phone in self.phones.values():
                    owner = phone.doc["owner"]
                    if owner and owner["email"] == USER["email"] and \
                            (now - phone.last_activity_s) * 1000 >= phone.timeout_ms:
                        self._ungroup(phone)
                        self.expired += 1


class _Bridge:
    """A TCP listener on 127.0.0.1 forwarding every connection to ``adbd``; client bytes are activity."""

    def __init__(self, adbd: str, on_activity) -> None:
        host, _, port = adbd.rpartition(":")
        self.target, self.on_activity = (host, int(port)), on_activity
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self.sockets += [client, upstream]
            if self.closed:
                self.close()
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client:
                    self.on_activity()
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        try:
            self.listener.close()
        except OSError:
            pass
        for sock in list(self.sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass


@pytest.fixture
def loopback_stf() -> Iterator[LoopbackStf]:
    """A running :class:`LoopbackStf` with a fresh token and no phones, stopped at teardown."""
    import secrets

    farm = LoopbackStf(f"stf-{secrets.token_hex(16)}")
    try:
        yield farm
    finally:
        farm.stop()


__all__ = ["FarmPhone", "LoopbackStf", "OTHER", "USER", "loopback_stf", "phone_doc"]
