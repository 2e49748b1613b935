"""A client of DeviceFarmer STF's REST API v1: list a farm's phones, lease one, remote-connect, give it back.

Everything here is read from STF's own sources (DeviceFarmer/stf at c7b928f, July 2026):
``lib/units/api/swagger/api_v1.yaml`` (paths, parameters, documented status codes), ``lib/units/api/
controllers/user.js`` and ``devices.js`` (response bodies), ``lib/units/api/helpers/securityHandlers.js``
(401s), ``lib/util/datautil.js`` and ``deviceutil.js`` (``using``/``owner``, what may be leased) and
``doc/API.md`` (examples). Every response is JSON ``{"success": bool, "description": str, ...}``.

* Auth: ``Authorization: Bearer TOKEN`` (an access token from STF's Settings > Keys). A missing or unknown
  token is 401 ``Bad Credentials`` / ``Requires Authentication``.
* ``GET /api/v1/user`` -> ``{"user": {"email", "name", ...}}``; ``GET /api/v1/devices`` -> ``{"devices":
  [...]}`` with ``serial``, ``present``, ``ready``, ``using`` (ours), ``owner`` (``{"email", "name"}`` or
  null), ``model``, ``manufacturer``, ``sdk``, ``abi``, ``version``, ``product``, ``marketName``,
  ``provider: {"name", "channel"}``; ``GET /api/v1/devices/{serial}`` -> ``{"device": ...}`` or 404.
* ``POST /api/v1/user/devices`` with ``{"serial", "timeout"}`` (timeout in ms) leases a phone: 200 ``Device
  successfully added``, 403 ``Device is being used or not available`` (present, ready and without owner is
  what may be leased; a phone we already hold is refused too), 404 ``Not Found (device)``, 504 ``Device is
  not responding``. ``DELETE /api/v1/user/devices/{serial}`` gives it back (403 when not ours).
* ``POST /api/v1/user/devices/{serial}/remoteConnect`` -> ``{"remoteConnectUrl": "HOST:PORT"}`` (the
  provider's ``--connect-url-pattern``, default ``${publicIp}:${publicPort}``), an adbd endpoint that accepts
  the ADB keys registered with ``POST /api/v1/user/adbPublicKeys`` (``{"publickey", "title"}``);
  ``DELETE`` on it stops it.

**The lease timeout is an idle timeout, and STF has no renew call.** The timeout given with the lease is
registered on the phone's group channel (``lib/units/device/plugins/group.js``, ``lib/wire/
channelmanager.js``): the phone is released when nothing happened for that long. Activity is any ADB packet
the remote-connect client sends (``conn.on('userActivity', group.keepalive)`` in ``lib/units/device/plugins/
connect.js``; adbkit's ``tcpusb/socket.ts`` emits ``userActivity`` for every packet). Posting the lease again
is refused (403: the phone has an owner). So a lease is kept alive by ADB traffic on the remote-connect
address, which :mod:`device_bench.farm` sends more often than the timeout.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .connect import parse_tcp_serial
from .errors import FarmError, FarmInputError

logger = logging.getLogger(__name__)

API = "/api/v1"
TOKEN_ENV = "STF_TOKEN"
HTTP_TIMEOUT_S = 30.0
FIELDS = ("model", "manufacturer", "sdk", "abi", "version", "product", "marketName", "provider")


class StfHttpError(FarmError):
    """STF answered a request with an error status.

    Attributes:
        status: the HTTP status (403: not available or not ours, 404: unknown phone, 504: phone silent).
        description: STF's ``description``.
    """

    def __init__(self, message: str, status: int, description: str) -> None:
        super().__init__(message)
        self.status, self.description = status, description


@dataclass(frozen=True)
class StfDevice:
    """One farm phone as ``GET /api/v1/devices`` describes it (the fields mnbench uses)."""

    serial: str
    present: bool
    ready: bool
    using: bool                      # leased by the token's user
    owner: str | None                # who holds it (name, else email), None when free
    fields: dict[str, str]           # model, manufacturer, sdk, abi, version, product, marketName, provider

    @classmethod
    def from_json(cls, item: dict) -> "StfDevice":
        owner = item.get("owner") or None
        provider = item.get("provider") or {}
        fields = {key: item.get(key) for key in FIELDS if key != "provider"}
        fields["provider"] = provider.get("name") if isinstance(provider, dict) else provider
        return cls(serial=str(item.get("serial", "")), present=bool(item.get("present")),
                   ready=bool(item.get("ready")), using=bool(item.get("using")),
                   owner=(owner.get("name") or owner.get("email") or "?") if isinstance(owner, dict)
                   else None,
                   fields={key: "" if value is None else str(value) for key, value in fields.items()})

    @property
    def state(self) -> str:
        """``free``, ``yours``, ``held by NAME``, ``absent`` or ``not ready``."""
        if not self.present:
            return "absent"
        if self.using:
            return "yours"
        if self.owner:
            return f"held by {self.owner}"
        return "free" if self.ready else "not ready"


def read_token(token_file: Path | None = None) -> str:
    """The access token: the file's content when given, else ``$STF_TOKEN``. Never logged or shown.

    Raises:
        FarmInputError: no token, an unreadable file, or a token with spaces inside.
    """
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise FarmInputError(f"cannot read the STF token file {token_file}: "
                                 f"{getattr(error, 'strerror', None) or error}") from None
        where = f"the STF token file {token_file}"
    else:
        token, where = os.environ.get(TOKEN_ENV, "").strip(), f"${TOKEN_ENV}"
    if not token:
        raise FarmInputError(f"no STF access token: set ${TOKEN_ENV} or pass --stf-token-file PATH (STF: "
                             "Settings > Keys > Access Tokens)")
    if any(char.isspace() for char in token):
        raise FarmInputError(f"{where} holds more than one word; it must hold the access token alone")
    return token


def parse_url(url: str) -> str:
    """The farm's base URL (``http(s)://host[:port][/prefix]``) without a trailing slash.

    Raises:
        FarmInputError: another scheme, no host, or credentials in the URL.
    """
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FarmInputError(f"--stf {url!r} is not an http(s)://HOST[:PORT] URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise FarmInputError("--stf takes the farm's address only (http(s)://HOST[:PORT][/PATH]); the token "
                             f"goes in ${TOKEN_ENV} or --stf-token-file")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class StfClient:
    """STF's API v1 at ``url`` with an access token; each method is one documented request.

    Raises (every method):
        FarmInputError: the farm is unreachable or not STF, or it rejected the token (401).
        StfHttpError: any other error status.
    """

    def __init__(self, url: str, token: str, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        self.url, self._token, self.timeout_s = parse_url(url), token, timeout_s

    def user(self) -> dict:
        return self._call("GET", "/user").get("user") or {}

    def devices(self) -> list[StfDevice]:
        return [StfDevice.from_json(item) for item in self._call("GET", "/devices").get("devices") or []]

    def device(self, serial: str) -> StfDevice:
        return StfDevice.from_json(self._call("GET", f"/devices/{_quote(serial)}").get("device") or {})

    def add_adb_key(self, public_key: str, title: str) -> None:
        self._call("POST", "/user/adbPublicKeys", {"publickey": public_key, "title": title})

    def lease(self, serial: str, timeout_s: float) -> None:
        self._call("POST", "/user/devices", {"serial": serial, "timeout": int(timeout_s * 1000)})

    def remote_connect(self, serial: str) -> str:
        """The phone's remote-connect adbd address, ``HOST:PORT``."""
        answer = self._call("POST", f"/user/devices/{_quote(serial)}/remoteConnect")
        address = str(answer.get("remoteConnectUrl") or "")
        if parse_tcp_serial(address) is None:
            raise FarmError(f"STF at {self.url} gave {serial} the remote-connect address {address!r}, not "
                            "HOST:PORT")
        return address

    def remote_disconnect(self, serial: str) -> None:
        self._call("DELETE", f"/user/devices/{_quote(serial)}/remoteConnect")

    def release(self, serial: str) -> None:
        self._call("DELETE", f"/user/devices/{_quote(serial)}")

    # ------------------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{API}{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {self._token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        where = f"STF at {self.url}: {method} {API}{path}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return self._json(response.read(), where)
        except urllib.error.HTTPError as error:
            answer = self._json(error.read(), where, strict=False)
            description = self._clean(str(answer.get("description") or error.reason or ""))
            if error.code == 401:
                raise FarmInputError(f"STF at {self.url} rejected the access token (401 {description}): "
                                     f"check ${TOKEN_ENV} or --stf-token-file") from None
            raise StfHttpError(f"{where}: {error.code} {description}", error.code, description) from None
        except (urllib.error.URLError, OSError, socket.timeout) as error:
            reason = getattr(error, "reason", None) or error
            raise FarmInputError(f"STF at {self.url} is unreachable: {self._clean(str(reason))}") from None

    def _json(self, raw: bytes, where: str, strict: bool = True) -> dict:
        try:
            answer = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            answer = None
        if isinstance(answer, dict):
            return answer
        if strict:
            raise FarmInputError(f"{where}: the answer is not STF's JSON (is {self.url} an STF server?)")
        return {}

    def _clean(self, text: str) -> str:
        """A server's text with the token blanked out, should it ever echo it."""
        return text.replace(self._token, "<token>") if self._token else text


def _quote(serial: str) -> str:
    return urllib.parse.quote(serial, safe="")
