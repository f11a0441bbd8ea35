"""`simsearch serve`: a small local HTTP server that keeps one index loaded and answers warm
queries. Standard library only; JSON in and out; binds 127.0.0.1 unless told otherwise.

    GET  /health                  {"ok": true, "index": FOLDER, "images": N}
    POST /query                   {"path": "/photos/a.jpg", "k": 10}  (a file the server reads)
    POST /query?k=10              the image's bytes (Content-Type: application/octet-stream)
         -> {"query": ..., "results": [{"path": ..., "score": ...}, ...]} or {"error": ...}

A request body over `MAX_BODY` bytes is refused (413). A request a web page sent is refused
(403): one with an Origin header (browsers add it to a page's POST; curl and scripts do not) or
`Sec-Fetch-Site: cross-site`, and, on a loopback address, one whose Host is not a loopback name
(a page that rebound its own name to 127.0.0.1), so no site a user visits can read the index's
paths or probe the disk through it. Nothing here prints: the CLI says where it listens
(`on_ready`).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from simsearch.errors import SimsearchError



def _loopback(host: str) -> bool:
    """Whether `host` (an address or name, without port or brackets) is this machine only."""
    import ipaddress
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

__all__ = ["serve", "make_server", "MAX_BODY"]

MAX_BODY = 64 << 20  # an uploaded picture (a 12 MP JPEG is a few MB)


def make_server(index, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """An HTTP server answering for `index` (a `simsearch.index.Index`); port 0 picks a free
    one (see `server.server_address`). Its vectors and model are loaded before it returns."""
    index.embedder  # load the network and the vectors now, not on the first request
    if not index.empty():
        index.search_vectors(_blank_query(index), 1)

    class Handler(_Handler):
        pass
    Handler.index = index
    Handler.loopback = _loopback(host)
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve(index, host: str = "127.0.0.1", port: int = 8765,
          on_ready: Callable[[str, int], None] | None = None,
          max_requests: int | None = None) -> None:
    """Serve until interrupted (or after `max_requests` requests, for tests)."""
    server = make_server(index, host, port)
    if on_ready is not None:
        on_ready(*server.server_address[:2])
    try:
        if max_requests is None:
            server.serve_forever()
        else:
            for _ in range(max_requests):
                server.handle_request()
    finally:
        server.server_close()


def _blank_query(index):
    import numpy as np
    vector = np.zeros((1, index.dim), np.float32)
    vector[0, 0] = 1.0
    return vector


class _Handler(BaseHTTPRequestHandler):
    index = None
    loopback = True
    server_version = "simsearch"

    def log_message(self, format, *args):  # the library does not print
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _from_a_page(self) -> str | None:
        """Why this request looks sent by a web page (see the module's docstring), or None."""
        if self.headers.get("Origin") is not None:
            return "a web page's request (Origin header)"
        if self.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return "a web page's request (Sec-Fetch-Site: cross-site)"
        if self.loopback:
            host = urlparse("//" + (self.headers.get("Host") or "")).hostname or ""
            if not _loopback(host):
                return f"Host {host!r} is not this machine's loopback name or address"
        return None

    def do_GET(self):
        why = self._from_a_page()
        if why:
            return self._reply(403, {"error": f"refused: {why}"})
        if urlparse(self.path).path != "/health":
            return self._reply(404, {"error": "not found; use GET /health or POST /query"})
        self._reply(200, {"ok": True, "index": os.path.abspath(self.index.folder),
                          "images": int((self.index.manifest or {}).get("count", 0))})

    def do_POST(self):
        why = self._from_a_page()
        if why:
            return self._reply(403, {"error": f"refused: {why}"})
        url = urlparse(self.path)
        if url.path != "/query":
            return self._reply(404, {"error": "not found; use POST /query"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._reply(400, {"error": "bad Content-Length"})
        if length > MAX_BODY or length < 0:
            return self._reply(413, {"error": f"body over {MAX_BODY} bytes"})
        body = self.rfile.read(length)
        try:
            params = parse_qs(url.query)
            k = _k(params.get("k", ["10"])[0])
            check = {"1": True, "true": True, "0": False, "false": False}.get(
                params.get("check", ["1"])[0].lower())
            if check is None:
                raise ValueError(f"check must be 1 or 0, not {params['check'][0]!r}")
            kind = self.headers.get("Content-Type", "")
            # JSON by its header, or by its first byte when a client sends it as a form (curl -d
            # does): no picture format starts with "{"
            if kind.startswith("application/json") or body.lstrip()[:1] == b"{":
                request = json.loads(body or b"{}")
                if not isinstance(request, dict):
                    raise ValueError(f"the JSON body must be an object, not "
                                     f"{type(request).__name__}")
                k = _k(request.get("k", k))
                check = request.get("check", check)
                if not isinstance(check, bool):
                    raise ValueError(f"check must be true or false, not {check!r}")
                path = request["path"]
                if not isinstance(path, str) or not path:
                    raise ValueError(f"path must be a file's path, not {path!r}")
                return self._answer(path, k, check=check)
            with tempfile.NamedTemporaryFile(suffix=".img") as f:
                f.write(body)
                f.flush()
                return self._answer(f.name, k, shown="upload", check=check)
        except (ValueError, KeyError, TypeError) as e:
            return self._reply(400, {"error": f"bad request ({e}); send JSON {{\"path\": ..., "
                                              f"\"k\": 10}} or the image bytes"})

    def _answer(self, path: str, k: int, shown: str | None = None, check: bool = True) -> None:
        try:
            result = self.index.search([path], k=k, check=check)[0]
        except SimsearchError as e:
            return self._reply(400, {"error": str(e)})
        query = shown or result.query
        if result.error:
            return self._reply(422, {"query": query, "error": result.error})
        self._reply(200, {"query": query, "results": [m.to_dict() for m in result.matches]})


MAX_K = 10000  # as `simsearch query -k`


def _k(value) -> int:
    """A request's k: a whole number from 1 to MAX_K (a JSON number or the query string's
    text; true, 2.5 and 1e9 are refused), or a ValueError saying so."""
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_K:
        raise ValueError(f"k must be a whole number from 1 to {MAX_K}, not {value!r}")
    return value

