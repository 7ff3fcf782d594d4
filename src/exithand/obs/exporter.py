"""Serving a Prometheus registry: an HTTP endpoint and/or an atomically written textfile.

``--metrics HOST:PORT`` (a port alone binds 127.0.0.1: metrics name processes' exit codes and
the memory figures, which are nobody else's business by default; ``[::1]:9900`` for IPv6,
``0.0.0.0:9900`` for every interface) serves ``/metrics`` from ``prometheus_client``'s own
threaded HTTP server, so a scrape never runs on the caller's thread.  ``--metrics-textfile
PATH`` writes the same text every second (and at exit) for node_exporter's textfile collector:
to a temporary file in the same directory, then ``rename(2)``, so a reader sees the old file or
the new one, never half of one (the temporary name starts with ``.`` and does not end in
``.prom``, so the collector never reads it).

Everything is checked by :meth:`Exporter.start` before the command says it started: a malformed
address is a usage error (exit 2); a port in use, an address that cannot be bound or a textfile
that cannot be written is an error (exit 1).  Both are :class:`MetricsError`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Optional

DEFAULT_HOST = "127.0.0.1"
TEXTFILE_INTERVAL = 1.0


class MetricsError(Exception):
    """Metrics cannot be exported as asked; ``exit_code`` 2 (bad value) or 1 (environment)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def prometheus() -> Any:
    """The ``prometheus_client`` module, or MetricsError naming the extra to install."""
    try:
        import prometheus_client
    except ImportError:
        raise MetricsError("metrics need the prometheus_client package: "
                           "pip install 'exithand[metrics]'") from None
    if hasattr(prometheus_client, "disable_created_metrics"):
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series per label set
    return prometheus_client


def parse_listen(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); MetricsError(exit 2) if bad."""
    t = text.strip()
    host, sep, port = t.rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, t
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise MetricsError(f"--metrics {text!r}: write an IPv6 address in brackets, "
                           "e.g. [::1]:9900", 2)
    if not host:
        raise MetricsError(f"--metrics {text!r}: empty host (a port alone binds "
                           f"{DEFAULT_HOST})", 2)
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise MetricsError(f"--metrics {text!r}: the port must be a number from 1 to 65535", 2)
    return host, int(port)


def write_textfile(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory + rename)."""
    d, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(d, f".{base}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Exporter:
    """Serve ``registry`` on ``listen`` and/or write it to ``textfile``; :meth:`start` checks
    both (MetricsError), :meth:`close` stops the server and writes the textfile a last time."""

    def __init__(self, registry: Any, listen: Optional[str], textfile: Optional[str],
                 interval: float = TEXTFILE_INTERVAL) -> None:
        self.registry = registry
        self.addr = parse_listen(listen) if listen is not None else None
        if textfile is not None and (not textfile.strip() or textfile.endswith("/")):
            raise MetricsError(f"--metrics-textfile {textfile!r}: expected a file path", 2)
        self.textfile = textfile
        self.interval = interval
        self.server: Any = None
        self._stop = threading.Event()
        self._writer: Optional[threading.Thread] = None
        self.url: Optional[str] = None

    def start(self) -> None:
        prom = prometheus()
        if self.textfile is not None:
            try:
                self.write()
            except OSError as e:
                raise MetricsError(f"--metrics-textfile {self.textfile}: cannot write: "
                                   f"{e.strerror}") from None
        if self.addr is not None:
            host, port = self.addr
            try:
                self.server, _thread = prom.start_http_server(port, addr=host,
                                                              registry=self.registry)
            except OSError as e:  # includes socket.gaierror for a name that does not resolve
                raise MetricsError(f"--metrics {host}:{port}: cannot listen: "
                                   f"{e.strerror or e}") from None
            bound = self.server.server_address
            self.url = f"http://{host if ':' not in host else '[' + host + ']'}:{bound[1]}/metrics"
        if self.textfile is not None:
            self._writer = threading.Thread(target=self._loop, name="exithand-metrics-textfile",
                                            daemon=True)
            self._writer.start()

    def write(self) -> None:
        assert self.textfile is not None
        write_textfile(self.textfile, prometheus().generate_latest(self.registry))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):  # a full disk now and then: the next one will do
                self.write()

    def close(self) -> None:
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout=5)
            self._writer = None
            with contextlib.suppress(OSError):
                self.write()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
