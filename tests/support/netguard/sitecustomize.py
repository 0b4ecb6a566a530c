"""The test suite's network guard: log (and optionally refuse) every non-loopback attempt.

Put this folder on PYTHONPATH and set PARAMAUDIT_NETGUARD_DIR: every Python process that inherits
the environment (Ray's raylet-spawned workers and dashboard, Prefect's temporary server, MLflow)
appends one line per non-loopback lookup or connect to ``net-<pid>.log`` there. With
PARAMAUDIT_NETGUARD_BLOCK=1 the attempt is also refused. An empty folder means the run stayed local.
"""

import os
import sys

_DIR = os.environ.get("PARAMAUDIT_NETGUARD_DIR")
_BLOCK = os.environ.get("PARAMAUDIT_NETGUARD_BLOCK") == "1"
_LOCAL = ("127.", "localhost", "::1", "0.0.0.0")


def _is_local(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    return not host or str(host).startswith(_LOCAL)


def _hook(event, args):
    if event == "socket.getaddrinfo":
        host, what = args[0], f"getaddrinfo {args[0]!r}:{args[1]}"
    elif event == "socket.connect":
        address = args[1]
        if not isinstance(address, tuple):  # unix sockets are local by nature
            return
        host, what = address[0], f"connect {address!r}"
    else:
        return
    if _is_local(host):
        return
    try:
        with open(os.path.join(_DIR, f"net-{os.getpid()}.log"), "a") as log:
            log.write(f"{what}\t{' '.join(sys.argv[:3])[:200]}\n")
    except OSError:
        pass  # the guard must never break the process it watches
    if _BLOCK:
        raise OSError(f"netguard: refused non-loopback {what}")


if _DIR:
    sys.addaudithook(_hook)
