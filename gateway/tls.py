"""The server-side TLS context shared by every listener.

``tls_cert``/``tls_key`` switch TLS on for all of them at once (REST and ops
HTTP, the device WebSocket, the provider HTTP/2 listener): a gateway that
terminates TLS itself must not leave one port in clear text.
"""

from __future__ import annotations

import ssl

from gateway.config import Config


def server_context(cfg: Config, alpn: list[str] | None = None) -> ssl.SSLContext | None:
    """A TLS 1.2+ server context for ``cfg``'s certificate, or None without one."""
    if not cfg.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
