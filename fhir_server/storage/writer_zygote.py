"""The zygote of the SQLite writer processes (``writer_process.py``): run as
``python -m fhir_server.storage.writer_zygote FD`` by a parent on first use. It imports what a
writer child needs once, then forks one child per request on the socket ``FD`` (a database
path and the child's socket, over ``SCM_RIGHTS``), answering with the child's pid. It is
single-threaded, so its forks are safe; it ends when the parent closes its end or dies.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys

from .writer_process import _HEAD, _serve

log = logging.getLogger(__name__)


def main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    # what every child imports, once
    import fhir_server.search.extract  # noqa: F401
    import fhir_server.storage._flush  # noqa: F401

    parent = socket.socket(fileno=fd)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(parent, 4096, 1)
        except OSError:
            return
        if not msg:
            return  # the parent closed its end or died
        pid = os.fork()
        if pid == 0:
            parent.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 0
            try:
                _serve(socket.socket(fileno=fds[0]), os.fsdecode(msg))
            except BaseException:  # noqa: BLE001 - reported, then the child ends
                log.exception("SQLite writer process failed")
                code = 1
            os._exit(code)
        for f in fds:
            os.close(f)
        parent.sendall(_HEAD.pack(pid))


if __name__ == "__main__":
    main(int(sys.argv[1]))
