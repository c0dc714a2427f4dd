"""`make lab`: the real JupyterLab server, localhost only, token auth, the semlab kernel."""

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("jupyterlab")

from semlab import lab  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_lab_command_refuses_an_empty_token():
    with pytest.raises(ValueError, match="authentication"):
        lab.lab_command(token="")
    cmd = lab.lab_command(port=8899)
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--ServerApp.port=8899" in cmd
    assert not any("token" in c.lower() for c in cmd)  # Jupyter generates one


@pytest.mark.slow
def test_lab_server_is_local_token_protected_and_has_the_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    spec = lab.register_kernel()
    kernel = json.loads((spec / "kernel.json").read_text())
    assert kernel["argv"][0].endswith("python") or "python" in kernel["argv"][0]
    port, token = _free_port(), "semlab-test-token"
    proc = subprocess.Popen(lab.lab_command(port, token), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                status, _ = _get(f"{base}/api/status", token)
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.25)
        else:
            pytest.fail("JupyterLab did not start: " + proc.stdout.read1(4000).decode(errors="replace"))
        assert _get(f"{base}/api/kernelspecs")[0] == 403  # no token, no access
        status, body = _get(f"{base}/api/kernelspecs", token)
        assert status == 200 and lab.KERNEL_NAME in json.loads(body)["kernelspecs"]
        status, body = _get(f"{base}/api/contents/notebooks", token)
        names = [c["name"] for c in json.loads(body)["content"]]
        assert "10_make_dataset.ipynb" in names
        # bound to localhost only: the machine's other addresses do not answer
        host_ip = socket.gethostbyname(socket.gethostname())
        if not host_ip.startswith("127."):
            with pytest.raises(OSError):
                socket.create_connection((host_ip, port), timeout=1).close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
