"""Static checks for the container deployment files.

docker-compose.yml is validated against the official compose-spec JSON schema
(vendored in tests/compose/compose-spec.json from compose-spec/compose-spec,
schema/compose-spec.json) so no Docker daemon is needed in CI.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCHEMA_FILE = Path(__file__).resolve().parent / "compose" / "compose-spec.json"

PACKAGE_DIRS = ("pipeline", "connectors", "schemas")
DASK_SERVICES = {"dask-scheduler", "dask-worker", "scheduled-dask"}
FLINK_SERVICES = {
    "flink-jobmanager",
    "flink-taskmanager",
    "beam-job-server",
    "beam-worker-pool",
    "scheduled-flink",
}
SCHEDULED_SERVICES = {"scheduler", "scheduled-dask", "scheduled-flink"}
NEWSBEAM_SERVICES = {*SCHEDULED_SERVICES, "stream"}
S3_SERVICE = "scheduled-s3"  # the cycle writing to MinIO (profile s3): no lake volume
NEWSBEAM_IMAGE = "newsbeam:local"
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
DASK_ADDRESS = "tcp://dask-scheduler:8786"

# jsonschema.validators.validator_for() only knows the canonical
# "http://json-schema.org/draft-07/schema#" spelling; compose-spec uses an
# https URL without "#", so map the draft explicitly instead of silently
# falling back to the latest draft.
_DRAFTS = {
    "draft-04": jsonschema.Draft4Validator,
    "draft-06": jsonschema.Draft6Validator,
    "draft-07": jsonschema.Draft7Validator,
    "2019-09": jsonschema.Draft201909Validator,
    "2020-12": jsonschema.Draft202012Validator,
}


# --- helpers ---


def _validator_class(schema: dict) -> type:
    uri = schema.get("$schema", "")
    matches = [cls for draft, cls in _DRAFTS.items() if draft in uri]
    assert len(matches) == 1, f"unrecognised $schema {uri!r}"
    return matches[0]


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    cls = _validator_class(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def compose() -> dict:
    doc = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _errors(validator, doc: dict) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)
    ]


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _mounts(service: dict) -> set[tuple[str, str]]:
    """(source, target) pairs of a service's volume mounts, short or long syntax."""
    out = set()
    for vol in service.get("volumes", []):
        if isinstance(vol, str):
            source, target = vol.split(":")[:2]
        else:
            source, target = vol.get("source", ""), vol["target"]
        out.add((source, target))
    return out


def _runs_newsbeam(service: dict) -> bool:
    if service.get("image") != NEWSBEAM_IMAGE:
        return False
    entrypoint = _as_list(service.get("entrypoint"))
    if not entrypoint:  # image default ENTRYPOINT is newsbeam
        return True
    words = " ".join(entrypoint + _as_list(service.get("command")))
    return "newsbeam" in words.split() or "newsbeam run" in words


def _shell_script(service: dict) -> str:
    """The `sh -c` script after compose's `$$` -> `$` unescaping."""
    assert _as_list(service["entrypoint"]) == ["/bin/sh", "-c"]
    command = _as_list(service["command"])
    assert len(command) == 1, "sh -c takes the script as a single argument"
    script = command[0]
    # A bare `$` would be interpolated by compose at load time (usually to "").
    bare = re.findall(r"\$(?!\$)", script.replace("$$", ""))
    assert not bare, f"unescaped $ in compose command: {script!r}"
    return script.replace("$$", "$")


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _dockerfile_exec_form(keyword: str) -> list[str]:
    values = [rest for kw, rest in _dockerfile_instructions() if kw == keyword]
    assert values, f"Dockerfile has no {keyword}"
    parsed = json.loads(values[-1])  # the last one wins; must be exec (JSON) form
    assert isinstance(parsed, list)
    return parsed


def _copy_sources() -> set[str]:
    sources = set()
    for kw, rest in _dockerfile_instructions():
        if kw != "COPY":
            continue
        args = [a for a in shlex.split(rest) if not a.startswith("--")]
        assert len(args) >= 2, f"malformed COPY {rest!r}"
        sources.update(a.rstrip("/") for a in args[:-1])
    return sources


# --- (a) schema ---


def test_schema_is_draft07_or_later(validator) -> None:
    assert isinstance(
        validator,
        jsonschema.Draft7Validator | jsonschema.Draft201909Validator | jsonschema.Draft202012Validator,
    )
    assert validator.schema["title"] == "Compose Specification"


def test_compose_file_validates_against_compose_spec(validator, compose) -> None:
    errors = _errors(validator, compose)
    assert not errors, "\n".join(errors)


def test_compose_file_has_no_obsolete_version_key(compose) -> None:
    assert "version" not in compose


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda d: d["services"]["scheduler"].__setitem__("ports", "not-a-list"),
            id="ports-not-a-list",
        ),
        pytest.param(lambda d: d.__setitem__("servicez", {}), id="unknown-top-level-key"),
        pytest.param(
            lambda d: d["services"]["dask-worker"]["deploy"].__setitem__("replicas", [2]),
            id="replicas-wrong-type",
        ),
    ],
)
def test_validator_rejects_mutated_compose(validator, compose, mutate) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert _errors(validator, broken), "schema accepted an invalid compose file"


# --- (b) profiles ---


def test_default_profile_is_only_the_scheduler(compose) -> None:
    default = {n for n, s in compose["services"].items() if not s.get("profiles")}
    assert default == {"scheduler"}


def test_dask_profile_services(compose) -> None:
    dask = {n for n, s in compose["services"].items() if "dask" in s.get("profiles", [])}
    assert dask == DASK_SERVICES


def test_dask_wiring(compose) -> None:
    services = compose["services"]

    scheduler = services["dask-scheduler"]
    assert _as_list(scheduler["entrypoint"]) == ["dask"]
    assert _as_list(scheduler["command"])[0] == "scheduler"
    published = {str(p).split(":")[-1] for p in scheduler["ports"]}
    assert {"8786", "8787"} <= published

    worker = services["dask-worker"]
    assert _as_list(worker["entrypoint"]) == ["dask"]
    command = _as_list(worker["command"])
    assert command[:2] == ["worker", DASK_ADDRESS]
    assert worker["deploy"]["replicas"] == 2

    job = services["scheduled-dask"]
    script = _shell_script(job)
    assert f"--runner {DASK_RUNNER}" in script
    assert f"--dask_client_address {DASK_ADDRESS}" in script
    assert "dask-scheduler" in _as_list(job["depends_on"])


def test_flink_profile_services(compose) -> None:
    flink = {n for n, s in compose["services"].items() if "flink" in s.get("profiles", [])}
    assert flink == FLINK_SERVICES


def _beam_version() -> str:
    pins = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    return next(line.split("==")[1] for line in pins if line.startswith("apache-beam=="))


def test_flink_versions_match_beam(compose) -> None:
    """The job server is built for one Beam release and one Flink minor: both must match
    the installed Beam and the cluster's Flink, and Beam's Python SDK must support it."""
    from apache_beam.options.pipeline_options import FlinkRunnerOptions

    services = compose["services"]
    job_server = re.fullmatch(
        r"apache/beam_flink(\d+\.\d+)_job_server:(.+)", services["beam-job-server"]["image"]
    )
    assert job_server, services["beam-job-server"]["image"]
    flink_minor, beam_version = job_server.groups()
    assert beam_version == _beam_version()
    assert flink_minor in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    for name in ("flink-jobmanager", "flink-taskmanager"):
        image = re.fullmatch(r"apache/flink:(\d+\.\d+)\.\d+-scala_2\.12-java\d+", services[name]["image"])
        assert image and image.group(1) == flink_minor, services[name]["image"]
    assert any(
        "--flink-master=flink-jobmanager:8081" in a for a in _as_list(services["beam-job-server"]["command"])
    )


def test_flink_wiring(compose) -> None:
    services = compose["services"]
    pool = services["beam-worker-pool"]
    assert pool["image"] == NEWSBEAM_IMAGE, "the SDK workers must run newsbeam's code and pins"
    assert _as_list(pool["entrypoint"])[-1] == "apache_beam.runners.worker.worker_pool_main"
    assert "--service_port=50000" in _as_list(pool["command"])
    assert pool["network_mode"] == "service:flink-taskmanager"
    script = _shell_script(services["scheduled-flink"])
    for flag in (
        "--runner PortableRunner",
        "--job_endpoint beam-job-server:8099",
        "--artifact_endpoint beam-job-server:8098",
        "--environment_type EXTERNAL",
        "--environment_config localhost:50000",
    ):
        assert flag in script, flag
    artifacts = {("beam-artifacts", "/tmp/beam-artifact-staging")}
    assert artifacts <= _mounts(services["beam-job-server"]) and artifacts <= _mounts(
        services["flink-taskmanager"]
    )
    properties = services["flink-taskmanager"]["environment"]["FLINK_PROPERTIES"]
    assert "jobmanager.rpc.address: flink-jobmanager" in properties


def test_stream_service(compose) -> None:
    stream = compose["services"]["stream"]
    assert stream["profiles"] == ["stream"]
    assert "entrypoint" not in stream, "the image's newsbeam entrypoint receives SIGTERM itself"
    assert _as_list(stream["command"]) == ["stream", "--output", "/data"]
    # `docker compose stop` sends SIGTERM, then SIGKILL after the grace period: one commit must fit.
    assert re.fullmatch(r"\d+m", stream["stop_grace_period"]) and int(stream["stop_grace_period"][:-1]) >= 1
    assert stream["restart"] == "unless-stopped"


# --- (c) lake volume ---


def test_lake_is_a_named_volume(compose) -> None:
    assert "lake" in compose.get("volumes", {})


def test_every_newsbeam_service_mounts_the_lake(compose) -> None:
    running = {n for n, s in compose["services"].items() if _runs_newsbeam(s)}
    assert running == NEWSBEAM_SERVICES | {S3_SERVICE}
    for name in running - {S3_SERVICE}:
        assert ("lake", "/data") in _mounts(compose["services"][name]), name


@pytest.mark.parametrize("name", ["dask-worker", "beam-worker-pool"])
def test_workers_share_the_lake(compose, name) -> None:
    # Workers write staged files themselves; without the volume they'd vanish.
    assert ("lake", "/data") in _mounts(compose["services"][name])


# --- scheduler loop ---


def test_scheduler_interval_and_restart(compose) -> None:
    for name in SCHEDULED_SERVICES:
        service = compose["services"][name]
        assert service["restart"] == "unless-stopped"
        env = service["environment"]
        assert env["NEWSBEAM_INTERVAL_SECONDS"] == "${NEWSBEAM_INTERVAL_SECONDS:-900}"


def test_s3_profile_writes_the_lake_to_minio(compose) -> None:
    services = compose["services"]
    assert {n for n, s in services.items() if "s3" in s.get("profiles", [])} == {
        "minio",
        "minio-bucket",
        S3_SERVICE,
    }
    job = services[S3_SERVICE]
    env = job["environment"]
    assert env["NEWSBEAM_OUTPUT_DIR"] == "s3://newsbeam/lake"
    assert "--output s3://newsbeam/lake" in _shell_script(job)
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["AWS_ALLOW_HTTP"] == "true"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        services["minio"]["environment"]["MINIO_ROOT_USER"],
        services["minio"]["environment"]["MINIO_ROOT_PASSWORD"],
    ), "the job signs with the credentials MinIO is started with"
    assert ("lake", "/data") not in _mounts(job), "no local lake: the bucket is the lake"
    assert job["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"
    assert "mb --ignore-existing lake/newsbeam" in _shell_script(services["minio-bucket"])
    assert services["minio-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", sorted([*SCHEDULED_SERVICES, S3_SERVICE]))
def test_loop_survives_failed_cycles(compose, name, tmp_path) -> None:
    """Run the real loop script with a fake `newsbeam` exiting 1 (partial run)."""
    script = _shell_script(compose["services"][name])
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "newsbeam"
    fake.parent.mkdir()
    # Exit 1 on every cycle; on the 3rd call stop the loop from outside.
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{calls}"\n'
        f'if [ "$(wc -l < "{calls}")" -ge 3 ]; then kill -TERM "$PPID"; fi\n'
        "exit 1\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "NEWSBEAM_INTERVAL_SECONDS": "0",
    }
    subprocess.run(["/bin/sh", "-c", script], env=env, timeout=30, capture_output=True, check=False)

    lines = calls.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3, "loop stopped after a failed cycle"
    output = "s3://newsbeam/lake" if name == S3_SERVICE else "/data"
    assert all(line.startswith(f"run --output {output}") for line in lines)


# --- (d) Dockerfile ---


def test_dockerfile_base_and_user() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users and users[-1] == "newsbeam"


def test_dockerfile_copies_packages_and_constraints() -> None:
    sources = _copy_sources()
    required = {
        *PACKAGE_DIRS,
        "seeds",
        "constraints.txt",
        "pyproject.toml",
        "README.md",
    }
    assert required <= sources, f"missing COPY of {sorted(required - sources)}"
    # Any package the project installs (pyproject's package list) must also reach the image.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    packages = {name for name in packages if any(fnmatch.fnmatch(name, pat) for pat in patterns)}
    assert packages == set(PACKAGE_DIRS)
    assert packages <= sources, f"packages not copied: {sorted(packages - sources)}"


def test_dockerfile_installs_with_constraints() -> None:
    runs = [rest for kw, rest in _dockerfile_instructions() if kw == "RUN"]
    pip = [r for r in runs if "pip install" in r]
    assert len(pip) == 1
    assert "-c constraints.txt" in pip[0]
    assert "'.[dask]'" in pip[0]


def test_dockerfile_runs_newsbeam() -> None:
    assert _dockerfile_exec_form("ENTRYPOINT") == ["newsbeam"]
    assert _dockerfile_exec_form("CMD") == ["run", "--output", "/data"]


def test_dockerignore_keeps_sources_and_drops_local_state() -> None:
    patterns = [
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", "data"} <= set(patterns)
    for source in _copy_sources():
        hit = [p for p in patterns if fnmatch.fnmatch(source, p)]
        assert not hit, f"{source} is COPY'd but excluded by .dockerignore {hit}"


# --- configuration, seeds and health ---


@pytest.mark.parametrize("name", sorted([*NEWSBEAM_SERVICES, S3_SERVICE]))
def test_services_read_the_mounted_config_and_seeds(compose, name) -> None:
    service = compose["services"][name]
    volumes = [v for v in service["volumes"] if isinstance(v, str)]
    assert "./config.toml:/etc/newsbeam/config.toml:ro" in volumes
    assert "./seeds:/seeds:ro" in volumes
    env = service["environment"]
    assert env["NEWSBEAM_CONFIG"] == "/etc/newsbeam/config.toml"
    output = "s3://newsbeam/lake" if name == S3_SERVICE else "/data"
    assert (env["NEWSBEAM_SEEDS_DIR"], env["NEWSBEAM_OUTPUT_DIR"]) == ("/seeds", output)


def test_the_mounted_config_is_a_valid_config() -> None:
    from pipeline.config import load_config

    config = load_config(ROOT / "config.toml")
    assert config.feeds and config.seeds_dir == ROOT / "seeds"


@pytest.mark.parametrize("name", ["scheduler", "stream"])
def test_long_running_services_have_a_healthcheck(compose, name) -> None:
    check = compose["services"][name]["healthcheck"]
    assert check["test"][0] == "CMD" and check["interval"] and check["start_period"]


def test_the_scheduler_health_follows_its_metrics_file(compose, tmp_path) -> None:
    """The healthcheck's own command, run against a metrics file fresh, then stale."""
    import os
    import subprocess
    import sys

    scheduler = compose["services"]["scheduler"]
    assert "--metrics-file /data/_metrics/newsbeam.prom" in " ".join(_as_list(scheduler["command"]))
    code = scheduler["healthcheck"]["test"][-1].replace(
        "/data/_metrics/newsbeam.prom", str(tmp_path / "m.prom")
    )
    env = {**os.environ, "NEWSBEAM_INTERVAL_SECONDS": "900"}

    def healthy() -> bool:
        return subprocess.run([sys.executable, "-c", code], env=env, timeout=30).returncode == 0

    assert not healthy()  # no cycle has ended yet
    (tmp_path / "m.prom").write_text("newsbeam_run_exit_code 0\n", encoding="utf-8")
    assert healthy()
    os.utime(tmp_path / "m.prom", (0, 0))  # the last cycle ended long ago
    assert not healthy()
