"""Deployment files, checked without a Docker daemon: the image and the compose file say what
they must, their commands run here as they would in the containers, and the README's curl
examples work against a live API."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[1]


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def instruction(name: str) -> list[str]:
    """Every `NAME ...` line of the Dockerfile, continuation lines joined."""
    joined = dockerfile().replace("\\\n", " ")
    return re.findall(rf"^{name} (.+)$", joined, flags=re.MULTILINE)


def test_the_image_is_slim_non_root_and_binds_loopback_unless_told() -> None:
    (base,) = instruction("FROM")
    assert base.endswith("-slim")
    (user,) = instruction("USER")
    assert user.strip() not in ("root", "0")
    (cmd,) = instruction("CMD")
    assert "0.0.0.0" not in cmd and "$IMGFINDER_HOST" in cmd
    env = " ".join(instruction("ENV"))
    assert "IMGFINDER_HOST=127.0.0.1" in env
    assert "IMGFINDER_DATA_DIR=/data" in env and "IMGFINDER_MODEL_DIR=/models" in env
    assert json.loads(instruction("VOLUME")[0]) == ["/data", "/models"]
    assert "/_stcore/health" in instruction("HEALTHCHECK")[0]
    runtime = (ROOT / "requirements.txt").read_text()
    assert not re.search(r"^(torch|torchvision|open_clip_torch)\b", runtime, flags=re.MULTILINE)


def test_compose_wires_page_api_and_qdrant() -> None:
    services = compose()["services"]
    assert set(services) == {"page", "api", "qdrant"}
    for name in ("page", "api"):
        service = services[name]
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), service["ports"]
        assert {"data:/data", "models:/models"} <= set(service["volumes"])
        assert service["environment"]["IMGFINDER_QDRANT_URL"] == "http://qdrant:6333"
        assert service["healthcheck"]["test"][0] == "CMD"
        assert service["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert services["api"]["environment"]["IMGFINDER_API_KEY"].startswith("${IMGFINDER_API_KEY:?")
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    assert "healthcheck" in services["qdrant"]
    assert set(compose()["volumes"]) == {"data", "models", "qdrant"}


def container_env(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    """The container's environment, with its volumes as folders here."""
    env = {**os.environ, "IMGFINDER_DATA_DIR": str(tmp_path / "data")}
    env["IMGFINDER_MODEL_DIR"] = str(tmp_path / "models")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the image's tools
    env.update({k: v.replace("/photos", str(tmp_path / "photos")) for k, v in extra.items()})
    return env


def test_the_api_service_command_runs_here(tmp_path: Path) -> None:
    api = compose()["services"]["api"]
    port = str(free_port())
    command = [part.replace("8000", port) for part in api["command"]]
    extra = {k: v for k, v in api["environment"].items() if k != "IMGFINDER_API_KEY"}
    env = container_env(tmp_path, extra)
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "needs an API key" in refused.stderr
    env["IMGFINDER_API_KEY"] = "compose-key"
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", server)
        probe = [part.replace("8000", port) for part in api["healthcheck"]["test"][1:]]
        assert subprocess.run(probe, timeout=30, check=False).returncode == 0
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/collections").status_code == 401
        keyed = httpx.get(f"{base}/collections", headers={"X-API-Key": "compose-key"})
        assert keyed.status_code == 200
    finally:
        server.terminate()
        server.wait(10)


def test_the_page_image_command_runs_here(tmp_path: Path) -> None:
    """The image's CMD and HEALTHCHECK, with an existing (empty) demo collection."""
    from imgfinder.store.collection import Collection

    Collection(tmp_path / "data" / "indexes" / "demo").close()
    port = str(free_port())
    (cmd,) = instruction("CMD")
    shell = json.loads(cmd)[2].replace("8501", port).replace("app.py", str(ROOT / "app.py"))
    env = container_env(tmp_path, {"IMGFINDER_COLLECTION": "demo", "IMGFINDER_HOST": "127.0.0.1"})
    page = subprocess.Popen(["sh", "-c", shell], env=env, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/_stcore/health", page)
        (check,) = instruction("HEALTHCHECK")
        probe = shlex.split(check.split(" CMD ", 1)[1].replace("8501", port))
        probe[0] = sys.executable
        assert subprocess.run(probe, timeout=30, check=False).returncode == 0
    finally:
        page.terminate()
        page.wait(10)


def readme_curls() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    return [line for line in block.splitlines() if line.startswith("curl ")]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_curl_examples_work(small_demo: tuple[Path, Path], tmp_path: Path) -> None:
    collection, folder = small_demo
    port = str(free_port())
    env = {**os.environ, "IMGFINDER_INDEXES": str(collection.parent)}
    server = subprocess.Popen(
        [sys.executable, "-m", "imgfinder", "serve", "--port", port],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    # a photo of the collection's world: a flat red fill is what confidence calls unrelated
    shutil.copy(next((folder / "images").rglob("*.jpg")), tmp_path / "query.jpg")
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", server)
        curls = readme_curls()
        assert len(curls) >= 6
        for line in curls:
            command = shlex.split(line.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
            ran = subprocess.run(
                [*command, "--fail-with-body"], cwd=tmp_path, capture_output=True, timeout=60
            )
            assert ran.returncode == 0, (line, ran.stdout[-300:], ran.stderr[-300:])
            if "-o" not in command:
                body = json.loads(ran.stdout)
                assert "error" not in body, (line, body)
                if "search" in line or "similar" in line:
                    assert body["hits"], (line, body)
        assert (tmp_path / "thumb.jpg").read_bytes().startswith(b"\xff\xd8")
    finally:
        server.terminate()
        server.wait(10)
