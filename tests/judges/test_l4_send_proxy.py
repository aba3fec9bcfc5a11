"""Judge: a backend behind `send_proxy` sees the real client address. The backend is nginx with
`listen ... proxy_protocol` (a PROXY parser nobody here wrote); the client is curl bound to
127.0.0.2, so its address cannot be mistaken for evenflow's own 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from l4_judge_support import curl, free_port, nginx, running_evenflow

pytestmark = [pytest.mark.judge, pytest.mark.timeout(60)]


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_backend_behind_send_proxy_sees_the_client(tmp_path: Path, version: str) -> None:
    port = free_port()
    servers = f"""
  server {{
    listen 127.0.0.1:{port} proxy_protocol;
    location / {{
      default_type text/plain;
      return 200 "client=$proxy_protocol_addr:$proxy_protocol_port peer=$remote_addr\\n";
    }}
  }}
"""
    with nginx(tmp_path / "nginx", servers, [port]):
        config = {
            "listeners": [{"name": "l4", "bind": "", "protocol": "tcp", "pool": "web"}],
            "pools": {"web": {"backends": [f"127.0.0.1:{port}"], "send_proxy": version}},
            "access_log": {"path": "off"},
        }
        with running_evenflow(config, tmp_path) as ef:
            answers = []
            for _ in range(3):
                done = curl(
                    "--interface",
                    "127.0.0.2",
                    "-w",
                    "local=%{local_ip}:%{local_port}\\n",
                    f"http://127.0.0.1:{ef.port()}/",
                )
                assert done.returncode == 0, done.stderr
                answers.append(done.stdout.splitlines())
    for body, local in answers:
        client = local.removeprefix("local=")
        assert client.startswith("127.0.0.2:"), local
        # nginx read the PROXY header: the client as curl itself reports it, port included
        assert body == f"client={client} peer=127.0.0.1", (body, local)
