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


def _token_of(cmd: list[str]) -> str:
    args = [c for c in cmd if c.startswith("--IdentityProvider.token=")]
    assert len(args) == 1, cmd
    return args[0].split("=", 1)[1]


def _poisoned_config(folder):
    """A user config that switches authentication off, in both current and old spelling."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jupyter_server_config.py").write_text('c.IdentityProvider.token = ""\n')
    (folder / "jupyter_lab_config.json").write_text(json.dumps({"ServerApp": {"token": "", "password": ""}}))
    return folder


def test_lab_command_always_carries_a_random_token():
    with pytest.raises(ValueError, match="authentication"):
        lab.lab_command(token="")
    with pytest.raises(ValueError, match="authentication"):
        lab.lab_command(token="   ")
    cmd = lab.lab_command(port=8899)
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--ServerApp.port=8899" in cmd
    assert "--ServerApp.port_retries=0" in cmd  # the printed URL's port is the real one
    t1, t2 = _token_of(cmd), _token_of(lab.lab_command())
    assert len(t1) >= 32 and t1 != t2  # secrets.token_urlsafe(32): fresh each time
    assert _token_of(lab.lab_command(token="given")) == "given"


def test_config_files_that_empty_the_token_are_found(tmp_path):
    bad = _poisoned_config(tmp_path / "bad")
    problems = lab.auth_problems([str(bad)])
    assert problems == [f"{bad / 'jupyter_server_config.py'}: IdentityProvider.token = '' switches authentication off",
                        f"{bad / 'jupyter_lab_config.json'}: ServerApp.token = '' switches authentication off"]
    good = tmp_path / "good"
    good.mkdir()
    (good / "jupyter_server_config.py").write_text("c.ServerApp.port = 9999\nc.IdentityProvider.token = 'abc'\n")
    (good / "jupyter_notebook_config.py").write_text('c.NotebookApp.token = ""\n')  # jupyter lab does not read it
    assert lab.auth_problems([str(good)]) == []
    (good / "jupyter_config.json").write_text(json.dumps({"NotebookApp": {"token": ""}}))
    assert lab.auth_problems([str(good)]) == [
        f"{good / 'jupyter_config.json'}: NotebookApp.token = '' switches authentication off"]


def test_main_refuses_an_explicitly_empty_token_and_starts_nothing(tmp_path, monkeypatch, capsys):
    bad = _poisoned_config(tmp_path / "config")
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(bad))
    monkeypatch.setattr(lab, "register_kernel", lambda: pytest.fail("must not get this far"))
    monkeypatch.setattr(lab.subprocess, "call", lambda *a, **k: pytest.fail("must not start JupyterLab"))
    assert lab.main(port=8899) == 2
    err = capsys.readouterr().err
    assert "refusing to start JupyterLab without authentication" in err
    assert str(bad / "jupyter_server_config.py") in err and "IdentityProvider.token = ''" in err
    with pytest.raises(lab.LabConfigError, match="ServerApp.token"):
        lab.check_config()


def test_main_passes_its_own_token_and_prints_the_url(tmp_path, monkeypatch, capsys):
    (tmp_path / "config").mkdir()
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr(lab, "auth_problems", lambda dirs=None: [])  # the machine's own files are not ours
    monkeypatch.setattr(lab, "register_kernel", lambda: tmp_path)
    started = []
    monkeypatch.setattr(lab.subprocess, "call", lambda cmd: started.append(cmd) or 0)
    assert lab.main(port=8899) == 0
    token = _token_of(started[0])
    assert len(token) >= 32
    assert f"http://127.0.0.1:8899/lab?token={token}" in capsys.readouterr().out


@pytest.mark.slow
def test_lab_server_is_local_token_protected_and_has_the_kernel(tmp_path, monkeypatch):
    """Even with a user config that empties the token, the server semlab starts asks for one."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(_poisoned_config(tmp_path / "config")))
    spec = lab.register_kernel()
    kernel = json.loads((spec / "kernel.json").read_text())
    assert kernel["argv"][0].endswith("python") or "python" in kernel["argv"][0]
    port = _free_port()
    cmd = lab.lab_command(port)
    token = _token_of(cmd)
    assert token
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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
        assert _get(f"{base}/api/kernelspecs", "wrong-token")[0] == 403
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
