"""No one let in: the cluster a job starts listens on loopback only, with Ray's token authentication on."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from tests.support import HANG_S

pytestmark = pytest.mark.slow

PROBE = """
import json, os, time
import psutil
from cluster.connect import connect

with connect(None, num_cpus=1) as cluster:
    time.sleep(1)
    listening = set()
    for p in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    listening.add((p.name(), c.laddr.ip, c.laddr.port))
        except psutil.Error:
            pass
    import ray
    print(json.dumps({"listening": sorted(listening), "auth": os.environ.get("RAY_AUTH_MODE"),
                      "node_ip": ray.util.get_node_ip_address(), "started_here": cluster.started_here}))
"""


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_the_embedded_cluster_listens_on_loopback_only_with_token_authentication():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # a user's plain shell
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["started_here"] and got["node_ip"] == "127.0.0.1"
    assert got["auth"] == "token"
    assert len(got["listening"]) >= 5  # GCS, raylet, workers, agents: the probe saw them
    wide = [s for s in got["listening"] if not _loopback(s[1])]
    assert not wide, f"listening beyond loopback: {wide}"
