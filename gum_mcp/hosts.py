"""Which Host and Origin an HTTP surface of gum-mcp accepts: the pure half of the one gate.

The policy (see gum_mcp/server/gate.py's docstring for what it accepts and why) and the small ASGI
helpers it needs, in a module of the lowest layer so that every HTTP entry point (the MCP transport's
`Gate`, the person's page in gum_mcp/ui) checks Host and Origin with the same code. Standard library only.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Send = Callable[[dict[str, Any]], Awaitable[None]]


# ---------------------------------------------------------------------------------------- names
def normalise(host: str) -> str:
    """A host name or address as the checks compare them: lower case, no brackets or trailing dot, an IP
    address in its canonical form."""
    name = host.strip().strip("[]").lower().rstrip(".")
    ip = ip_of(name)
    return name if ip is None else str(ip)


def ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    name = normalise(host)
    if name == "localhost":
        return True
    ip = ip_of(name)
    return ip is not None and ip.is_loopback


def split_authority(value: str) -> tuple[str, int | None] | None:
    """A Host header value as (normalised host, port or None); None when malformed."""
    value = value.strip()
    port_text: str | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif ":" in value:  # an IPv6 address must be bracketed
        return None
    else:
        host = value
    if port_text is not None and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        return None
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        return None
    return normalise(host), None if port_text is None else int(port_text)


def machine_names() -> set[str]:
    """This machine's own host names (for a wildcard bind)."""
    names = set()
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names |= {normalise(name), normalise(name.split(".")[0]) + ".local"}
    return names


# ---------------------------------------------------------------------------------------- policy
@dataclass(frozen=True)
class Policy:
    """The Host and Origin values a server accepts (see the module docstring)."""

    names: frozenset[str]
    any_ipv4: bool = False
    any_ipv6: bool = False
    extra: frozenset[str] = field(default_factory=frozenset)

    def host_ok(self, host: str | None) -> bool:
        parsed = split_authority(host) if host else None
        if parsed is None:
            return False
        name = parsed[0]
        ip = ip_of(name)
        if ip is not None and ((ip.version == 4 and self.any_ipv4) or (ip.version == 6 and self.any_ipv6)):
            return True
        return name in self.names or name in self.extra

    def origin_ok(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True
        try:
            parts = urlsplit(origin.strip())
            origin_port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            return False
        name = normalise(parts.hostname)
        if is_loopback(name) or name in self.extra:
            return True
        request = split_authority(host) if host else None
        if request is None:
            return False
        default = 443 if parts.scheme == "https" else 80
        return name == request[0] and (origin_port or default) == (request[1] or default)


def policy_for(bind: str, *, allow_hosts: Iterable[str] = (), own_names: Iterable[str] | None = None) -> Policy:
    """The policy of a server bound to `bind` (an address or a host name). `own_names` are this
    machine's host names, for a wildcard bind (default: asked of the system)."""
    name = normalise(bind)
    ip = ip_of(name)
    names: set[str] = set()
    any_ipv4 = any_ipv6 = False
    if name == "localhost":
        names |= {"localhost", "127.0.0.1", "::1"}
    elif ip is not None and ip.is_unspecified:
        names |= {"localhost", "127.0.0.1"} | set(machine_names() if own_names is None else map(normalise, own_names))
        any_ipv4 = True
        if ip.version == 6:
            names.add("::1")
            any_ipv6 = True
    else:
        names.add(name)
        if name in ("127.0.0.1", "::1"):
            names.add("localhost")
    return Policy(names=frozenset(names), any_ipv4=any_ipv4, any_ipv6=any_ipv6,
                  extra=frozenset(normalise(h) for h in allow_hosts if h.strip()))


def first_header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    return next((value.decode("latin-1") for key, value in headers if key.lower() == name), None)


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
