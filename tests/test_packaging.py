"""pyproject, constraints, environment.yml and the Makefile agree."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_every_dependency_is_pinned_in_constraints():
    pp = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            n, v = line.split("==")
            pins[n.strip().lower()] = v
    reqs = list(pp["dependencies"])
    for extra, items in pp["optional-dependencies"].items():
        reqs += [r for r in items if not r.startswith("semlab")]
    missing = sorted({_name(r) for r in reqs} - set(pins))
    assert not missing, f"not pinned in constraints.txt: {missing}"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_environment_yml_matches_pyproject():
    pp = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    py = [d for d in deps if isinstance(d, str) and d.startswith("python")][0]
    assert py.split("=")[1] == "3.11" and "3.11" in pp["requires-python"]
    pip = [d for d in deps if isinstance(d, dict)][0]["pip"]
    assert "-c constraints.txt" in pip
    editable = [p for p in pip if p.startswith("-e .[")][0]
    extras = editable[len("-e .["):-1].split(",")
    assert set(extras) <= set(pp["optional-dependencies"])


def test_makefile_has_readme_commands():
    mk = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    for target in ("report", "test", "help"):
        assert re.search(rf"^{target}:", mk, re.M)
    assert "make report" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
