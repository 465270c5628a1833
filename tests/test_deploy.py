"""deploy/k8s works as written: the kustomization renders, every core resource matches
the Kubernetes schema, every container runs a command line the CLI accepts with
variables the code reads, as a non-root user with limits and probes.

Both kustomizations are checked: deploy/k8s, and the overlay deploy/k8s-redis-cluster
(the base plus a Redis Cluster of its own and the config pointed at it). They are
rendered here in Python, not by kustomize: plain lists of files and directories with a
namespace, an image tag and strategic-merge patches of maps, and a bare CI machine has
no kustomize or kubectl (neither is on PyPI). `render()` refuses any kustomization
field or patch form it does not implement, so a remote base or a list patch added later
fails here instead of being skipped.
Core resources are validated offline against the Kubernetes JSON schemas bundled by
the `kubernetes-validate` package (strict: unknown fields fail). The operators' custom
resources (Strimzi, Flink) have no schema there: they get structural checks, and the
Pod templates inside them are validated as core Pods.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_helpers import featureline_argv_error, redis_of_env, token_problems, unknown_env_vars

from featureline.errors import BadInputError
from featureline.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
CLUSTER = ROOT / "deploy" / "k8s-redis-cluster"
KUSTOMIZATIONS = pytest.mark.parametrize("root", [K8S, CLUSTER], ids=["base", "redis-cluster"])
# Oldest Kubernetes these manifests target: gRPC probes are GA since 1.27.
K8S_VERSION = "1.30.0"
_KUSTOMIZE_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
_CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding"}
# Custom resources: apiVersion -> kind -> the spec fields its operator requires.
_CUSTOM = {
    "flink.apache.org/v1beta1": {"FlinkDeployment": ("image", "flinkVersion", "jobManager", "taskManager")},
    "kafka.strimzi.io/v1beta2": {
        "Kafka": ("kafka",),
        "KafkaNodePool": ("replicas", "roles", "storage"),
        "KafkaTopic": ("partitions", "replicas"),
    },
}
# Containers of the featureline image that run something else than `featureline`.
_OTHER_COMMANDS = {("python", "-m", "apache_beam.runners.worker.worker_pool_main")}
# The processes that run until stopped (probes), as opposed to Jobs.
_LONG_RUNNING = {"Deployment", "FlinkDeployment", "StatefulSet", "DaemonSet"}


def render(root: Path = K8S) -> list[dict[str, Any]]:
    """What `kubectl kustomize ROOT` gives, for the fields these kustomizations use."""
    spec = yaml.safe_load((root / "kustomization.yaml").read_text())
    extra = set(spec) - _KUSTOMIZE_FIELDS
    assert not extra, f"kustomization fields {sorted(extra)} are not rendered by this test: add them"
    docs: list[dict[str, Any]] = []
    for name in spec["resources"]:
        path = (root / name).resolve()
        if path.is_dir():  # a base: rendered with its own kustomization
            # kustomize refuses a base that contains the kustomization loading it.
            assert not root.resolve().is_relative_to(path), f"{root}: base {name} contains it (a cycle)"
            docs += render(path)
            continue
        assert path.is_file(), f"resource {name}: only files and directories are rendered here"
        # kustomize's default load restrictor: a file must be inside the kustomization's folder.
        assert path.is_relative_to(root.resolve()), f"{root}: {name} is outside its folder"
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for entry in spec.get("patches", []):
        _patch(docs, root, entry)
    tags = {i["name"]: i["newTag"] for i in spec.get("images", [])}
    seen: set[tuple[str, str, str]] = set()
    for doc in docs:
        if doc["kind"] not in _CLUSTER_SCOPED and "namespace" in spec:
            doc["metadata"]["namespace"] = spec["namespace"]
        key = (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
        assert key not in seen, f"{key} is defined twice"
        seen.add(key)
        for _, _, container in containers(doc):
            image = re.split(r"[:@]", container["image"])[0]
            if image in tags:
                container["image"] = f"{image}:{tags[image]}"
    return docs


def _patch(docs: list[dict[str, Any]], root: Path, entry: dict[str, Any]) -> None:
    """A `patches: - path: FILE` strategic-merge patch of one resource, named by its
    apiVersion, kind and name (inline patches, targets and JSON 6902 are not rendered)."""
    assert set(entry) == {"path"}, f"patch {entry}: only `path:` patches are rendered by this test"
    patch = yaml.safe_load((root / entry["path"]).read_text())
    ident = (patch["apiVersion"], patch["kind"], patch["metadata"]["name"])
    namespace = patch["metadata"].get("namespace")
    targets = [
        d
        for d in docs
        if (d["apiVersion"], d["kind"], d["metadata"]["name"]) == ident
        and namespace in (None, d["metadata"].get("namespace"))
    ]
    assert len(targets) == 1, f"patch {entry['path']}: {len(targets)} resources are {ident}"
    merge(targets[0], patch, entry["path"])


def merge(target: dict[str, Any], patch: dict[str, Any], where: str) -> None:
    """Strategic merge of maps: a map merges key by key, null deletes, a scalar replaces.
    Lists merge by keys in Kubernetes (containers by name...): refused, not guessed."""
    for key, value in patch.items():
        if value is None:
            assert key in target, f"{where}: null for {key}, which is not there (a typo?)"
            del target[key]
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value, f"{where}: {key}")
        else:
            assert not isinstance(value, list), f"{where}: {key} is a list: list merges are not rendered"
            target[key] = value


def pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every Pod spec in a resource, at any depth (templates, CRD pod templates)."""
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def containers(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for pod in pod_specs(doc):
        for container in pod["containers"] + pod.get("initContainers", []):
            yield f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}", pod, container


def featureline_containers(root: Path = K8S) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [c for d in render(root) for c in containers(d) if c[2]["image"].startswith("featureline:")]


def _dockerfile_uid() -> int:
    users = re.findall(r"^USER (\d+)", (ROOT / "deploy" / "Dockerfile").read_text(), re.M)
    assert users, "deploy/Dockerfile sets no numeric USER: the image runs as root"
    return int(users[-1])


@KUSTOMIZATIONS
def test_core_resources_match_the_kubernetes_schema(root: Path) -> None:
    validated: set[str] = set()
    for doc in render(root):
        group = _CUSTOM.get(doc["apiVersion"], {})
        if doc["kind"] in group:
            for pod in pod_specs(doc):  # a CRD's pod template is a core Pod
                template = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"}, "spec": pod}
                kubernetes_validate.validate(template, K8S_VERSION, strict=True)
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        validated.add(doc["kind"])
    expected = {"Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Service"}
    expected |= {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "CronJob"}
    expected |= {"StatefulSet"} if root == CLUSTER else set()
    assert expected <= validated, f"not validated: {sorted(expected - validated)}"


def test_a_schema_violation_is_caught() -> None:
    """The validation above can fail: an unknown field in a container is an error."""
    deployment = next(d for d in render() if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@KUSTOMIZATIONS
def test_custom_resources_have_what_their_operators_require(root: Path) -> None:
    found = 0
    for doc in render(root):
        if doc["apiVersion"] not in _CUSTOM:
            continue
        kinds = _CUSTOM[doc["apiVersion"]]
        assert doc["kind"] in kinds, f"{doc['apiVersion']} {doc['kind']} is not a kind this test knows"
        assert doc["metadata"].get("name"), doc
        missing = [f for f in kinds[doc["kind"]] if f not in doc.get("spec", {})]
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']}: spec lacks {missing}"
        if doc["kind"] == "FlinkDeployment":
            assert re.fullmatch(r"flink:\d+\.\d+\.\d+", doc["spec"]["image"]), doc["spec"]["image"]
        found += 1
    assert found >= 4  # FlinkDeployment, Kafka, KafkaNodePool, 2 KafkaTopics


@KUSTOMIZATIONS
def test_every_featureline_command_line_is_accepted_by_the_cli(root: Path) -> None:
    commands: set[str] = set()
    for where, _, container in featureline_containers(root):
        if "command" in container:
            other = tuple(container["command"][:3])
            assert other in _OTHER_COMMANDS, f"{where}: command {container['command']} is not `featureline`"
            continue
        argv = list(container.get("args", []))
        error = featureline_argv_error(argv)
        assert error is None, f"{where}: {error}"
        commands.add(argv[0])
    assert commands == {"serve", "stream", "backfill", "materialize"}


def test_a_flag_the_cli_does_not_have_is_caught() -> None:
    assert featureline_argv_error(["stream", "--runner", "FlinkRunner", "--flink-masterr", "x:8081"])
    assert featureline_argv_error(["stream", "--flink-master", "x:8081"])  # needs FlinkRunner
    assert featureline_argv_error(["serve", "--http-port", "8080"]) is None


def _env_sources(docs: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(kind, name) of each ConfigMap / Secret -> its keys."""
    return {
        (d["kind"], d["metadata"]["name"]): set(d.get("data", {})) | set(d.get("stringData", {}))
        for d in docs
        if d["kind"] in ("ConfigMap", "Secret")
    }


@KUSTOMIZATIONS
def test_every_environment_variable_is_one_the_code_reads(root: Path) -> None:
    docs = render(root)
    sources = _env_sources(docs)
    names: set[str] = set()
    for where, _, container in (c for d in docs for c in containers(d)):
        names |= {e["name"] for e in container.get("env", [])}
        for ref in container.get("envFrom", []):
            kind, body = (
                ("ConfigMap", ref["configMapRef"]) if "configMapRef" in ref else ("Secret", ref["secretRef"])
            )
            assert (kind, body["name"]) in sources, f"{where}: {kind} {body['name']} is not defined"
            names |= sources[(kind, body["name"])]
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    env_text = "\n".join(line for line in lines if not line.startswith(("ARG ", "#")))  # ARG: build-time
    names |= set(re.findall(r"\b(FEATURELINE_[A-Z0-9_]+)=", env_text))
    assert "FEATURELINE_OFFLINE_DIR" in names and "FEATURELINE_REGISTRY_URL" in names
    assert unknown_env_vars(names) == []
    assert unknown_env_vars({"FEATURELINE_FLINK_MASTER"}) == ["FEATURELINE_FLINK_MASTER"]


def _config(root: Path = K8S) -> dict[str, str]:
    config = next(
        d for d in render(root) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "featureline-config"
    )
    return {k: str(v) for k, v in config["data"].items()}


@KUSTOMIZATIONS
def test_writable_paths_are_volumes_under_a_read_only_root(root: Path) -> None:
    uid = _dockerfile_uid()
    offline = str(Settings(offline_dir=_config(root)["FEATURELINE_OFFLINE_DIR"]).resolved_offline_dir)
    home = _config(root)["FEATURELINE_HOME"]
    claims = {d["metadata"]["name"] for d in render(root) if d["kind"] == "PersistentVolumeClaim"}
    for where, pod, container in featureline_containers(root):
        context = pod.get("securityContext", {})
        assert context.get("runAsNonRoot") is True and context.get("runAsUser") == uid, where
        own = container.get("securityContext", {})
        assert own.get("readOnlyRootFilesystem") is True, where
        assert own.get("allowPrivilegeEscalation") is False, where
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        for mount in mounts.values():
            assert mount in volumes, f"{where}: volume {mount} is not defined"
            claim = volumes[mount].get("persistentVolumeClaim", {}).get("claimName")
            assert claim is None or claim in claims, f"{where}: claim {claim} is not defined"
        assert "/tmp" in mounts and home in mounts, f"{where}: /tmp and {home} must be writable volumes"
        if container.get("args", [""])[0] in ("stream", "backfill", "materialize"):
            assert offline in mounts, f"{where}: the offline store ({offline}) is not mounted"


@KUSTOMIZATIONS
def test_every_container_is_tagged_and_has_requests_and_limits(root: Path) -> None:
    for doc in render(root):
        for where, _, container in containers(doc):
            image = container["image"]
            assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), f"{where}: {image}"
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{where}: {part} {resources}"


@KUSTOMIZATIONS
def test_long_running_containers_probe_real_endpoints(root: Path) -> None:
    for doc in render(root):
        if doc["kind"] not in _LONG_RUNNING:
            continue
        for where, _, container in containers(doc):
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{where} has no {probe}"
            args = container.get("args", [])
            for spec in (
                container[p] for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in container
            ):
                if "httpGet" in spec:  # the serving REST routes (serving_api/rest_app.py)
                    assert spec["httpGet"]["path"] in ("/health", "/metrics"), where
                if "grpc" in spec:  # grpc.health.v1 on the public gRPC port
                    assert str(spec["grpc"]["port"]) == args[args.index("--grpc-port") + 1], where


def test_the_serving_tokens_grant_the_demo() -> None:
    secret = next(d for d in render() if d["metadata"]["name"] == "featureline-serving-tokens")
    assert token_problems(secret["stringData"]["tokens.txt"]) == []
    assert token_problems("tok read\n")  # the scope shipped before: 403 for every request


@pytest.mark.parametrize("uri", ["s3a://featureline-offline/offline", "s3://bucket/offline", "gs://b/o"])
def test_an_object_store_offline_dir_is_refused(uri: str) -> None:
    with pytest.raises(BadInputError, match="must be a local or mounted path"):
        _ = Settings(offline_dir=uri).resolved_offline_dir


def test_a_local_or_file_offline_dir_is_a_path(tmp_path: Path) -> None:
    assert Settings(offline_dir=str(tmp_path)).resolved_offline_dir == tmp_path.resolve()
    assert Settings(offline_dir=f"file://{tmp_path}").resolved_offline_dir == tmp_path.resolve()


def test_the_stream_runner_flags_become_beam_options() -> None:
    from featureline.cli.main import build_parser
    from featureline.streaming.cli import beam_args

    argv = ["stream", "--runner", "FlinkRunner", "--flink-master", "jm:8081"]
    argv += ["--pipeline-option", "environment_type=EXTERNAL", "--pipeline-option=--parallelism=4"]
    args = build_parser("stream").parse_args(argv)
    assert beam_args(args) == ["--flink_master=jm:8081", "--environment_type=EXTERNAL", "--parallelism=4"]
    for bad in (["--pipeline-option", "noequals"], ["--pipeline-option", "runner=X"]):
        with pytest.raises(BadInputError):
            beam_args(build_parser("stream").parse_args(["stream", *bad]))


# --- the Redis Cluster overlay ---------------------------------------------------------


def _resource(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_the_cluster_overlay_points_featureline_at_its_nodes() -> None:
    docs = render(CLUSTER)
    sts = _resource(docs, "StatefulSet", "redis-cluster")
    service, replicas = sts["spec"]["serviceName"], sts["spec"]["replicas"]
    assert replicas == 6  # 3 primaries with a replica each (--cluster-replicas 1 below)
    pods = [f"redis-cluster-{i}.{service}" for i in range(replicas)]  # the pods' DNS names
    headless = _resource(docs, "Service", service)["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    redis = sts["spec"]["template"]["spec"]["containers"][0]
    args = redis["args"]

    def flag(name: str) -> str:
        return str(args[args.index(name) + 1])

    assert (flag("--port"), flag("--cluster-enabled")) == ("6379", "yes")
    # The slot map names each node by its DNS name (Redis 7), as the seeds below do.
    assert flag("--cluster-announce-hostname") == f"$(POD_NAME).{service}"
    assert flag("--cluster-preferred-endpoint-type") == "hostname"
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in redis["env"]
    cfg = redis_of_env(_config(CLUSTER))
    assert (cfg.redis_type, cfg.nodes) == ("redis_cluster", tuple((p, 6379) for p in pods))
    base = redis_of_env(_config())
    assert (base.redis_type, base.nodes) == ("redis", (("redis", 6379),))
    job = _resource(docs, "Job", "redis-cluster-create")["spec"]["template"]["spec"]["containers"][0]
    script = " ".join(job["command"])
    assert f"for i in {' '.join(str(i) for i in range(replicas))}; do" in script
    assert f"redis-cluster-$i.{service}" in script and "--cluster-replicas 1 --cluster-yes" in script
    assert "cluster_state:ok" in script


def test_redis_pods_run_as_the_images_user_on_a_read_only_root() -> None:
    docs = render(CLUSTER)
    redis_containers = [c for d in docs for c in containers(d) if c[2]["image"].startswith("redis:")]
    assert len(redis_containers) == 2  # the nodes and the create Job
    for where, pod, container in redis_containers:
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == 999, where  # the image's redis
        own = container["securityContext"]
        assert own["readOnlyRootFilesystem"] is True and own["allowPrivilegeEscalation"] is False, where
    sts = _resource(docs, "StatefulSet", "redis-cluster")
    mounts = sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    claims = [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
    assert {"name": "data", "mountPath": "/data"} in mounts and claims == ["data"]
    budget = _resource(docs, "PodDisruptionBudget", "redis-cluster")["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"] == sts["spec"]["selector"]


def test_the_renderer_refuses_what_it_does_not_implement() -> None:
    target = {"data": {"A": "1"}}
    merge(target, {"data": {"A": None, "B": "2"}}, "p")
    assert target == {"data": {"B": "2"}}
    with pytest.raises(AssertionError, match="not there"):
        merge(target, {"data": {"A": None}}, "p")
    with pytest.raises(AssertionError, match="list merges"):
        merge({"spec": {}}, {"spec": {"containers": [{"name": "x"}]}}, "p")
