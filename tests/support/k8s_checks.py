"""Checks over rendered Kubernetes manifests: each returns a list of problems (empty = good).

Kept apart from the tests so that the tests can also feed them broken manifests and see
each problem reported (a checker that never fails proves nothing).
"""

from __future__ import annotations

import ipaddress
import math
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from support.cnpg_schema import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
}
NAMESPACE = "essc"
PORTS = {"gateway": 8000, "identity": 8001, "issuance": 8002, "settlement": 8003}
SERVICES = tuple(PORTS)
DB_SERVICES = ("identity", "issuance", "settlement")
KEYS_DIR = "/var/lib/essc/keys"
# The oldest Kubernetes we support and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

Obj = dict[str, Any]


# ---- rendering and lookup ---------------------------------------------------------------------


def kubectl() -> str | None:
    """The kubectl binary, if installed (``kubectl kustomize`` renders the overlays)."""
    return shutil.which("kubectl")


def render(path: Path) -> list[Obj]:
    """``kubectl kustomize <path>`` parsed into objects."""
    binary = kubectl()
    assert binary is not None
    out = subprocess.run(
        [binary, "kustomize", str(path)], capture_output=True, text=True, check=True, timeout=60
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def must(obj: Obj | None) -> Obj:
    """``obj``, which the caller knows is there (fails the test otherwise)."""
    assert obj is not None
    return obj


def find(objs: Iterable[Obj], kind: str, name: str) -> Obj | None:
    for obj in objs:
        if obj.get("kind") == kind and obj.get("metadata", {}).get("name") == name:
            return obj
    return None


def of_kind(objs: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o.get("kind") == kind]


def pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def pod_labels(obj: Obj) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"].get("labels", {})
    return labels


def all_containers(spec: Obj) -> Iterator[Obj]:
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def config_env(objs: list[Obj], deployment: Obj) -> dict[str, str]:
    """The environment a Deployment's main container gets from its ConfigMaps."""
    env: dict[str, str] = {}
    name = deployment["metadata"]["name"]
    for container in pod_spec(deployment)["containers"]:
        if container["name"] != name:
            continue
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef")
            if ref:
                cm = find(objs, "ConfigMap", ref["name"])
                if cm:
                    env.update(cm.get("data", {}))
    return env


def dockerfile_graceful_timeout(service: str) -> int:
    """``--timeout-graceful-shutdown`` in the service's image command (deploy/Dockerfile)."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    stage = text.split(f"AS {service}\n", 1)[1].split("\nFROM ", 1)[0]
    match = re.search(r'"--timeout-graceful-shutdown",\s*"(\d+)"', stage)
    assert match, f"no --timeout-graceful-shutdown in the {service} stage"
    return int(match.group(1))


# ---- schemas ----------------------------------------------------------------------------------


def schema_problems(objs: list[Obj], versions: Iterable[str] = K8S_VERSIONS) -> list[str]:
    """Every object against the Kubernetes schema (strict) or our CloudNativePG allow-list."""
    problems: list[str] = []
    for obj in objs:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        crd = SCHEMAS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
        if crd is not None:
            for error in jsonschema.Draft7Validator(crd).iter_errors(obj):
                path = ".".join(str(p) for p in error.absolute_path)
                problems.append(f"{where}: {path}: {error.message}")
            continue
        if "." in obj.get("apiVersion", "").split("/")[0] and not obj["apiVersion"].startswith(
            ("apps/", "batch/", "policy/", "autoscaling/", "networking.k8s.io/")
        ):
            problems.append(f"{where}: no schema for {obj['apiVersion']} (add it to cnpg_schema)")
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                problems.append(f"{where} (k8s {version}): {path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(f"{where} (k8s {version}): {exc}")
    return problems


# ---- workloads --------------------------------------------------------------------------------


def _hardening_problems(where: str, spec: Obj) -> list[str]:
    problems: list[str] = []
    pod_sc = spec.get("securityContext", {})
    if pod_sc.get("runAsNonRoot") is not True:
        problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
    if pod_sc.get("runAsUser", 0) == 0:
        problems.append(f"{where}: pod runs as uid 0 or an unset uid")
    if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: the service account token is mounted")
    for c in all_containers(spec):
        cw = f"{where}/{c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cw}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cw}: readOnlyRootFilesystem is not true")
        if sc.get("runAsUser", 1) == 0 or sc.get("runAsNonRoot") is False:
            problems.append(f"{cw}: runs as root")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{cw}: capabilities are not all dropped")
        if sc.get("privileged"):
            problems.append(f"{cw}: privileged")
        resources = c.get("resources", {})
        for bound in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if res not in (resources.get(bound) or {}):
                    problems.append(f"{cw}: no {res} {bound}")
        image = str(c.get("image", ""))
        if image.endswith(":latest") or (":" not in image.rsplit("/", 1)[-1] and "@" not in image):
            problems.append(f"{cw}: image {image!r} has no explicit tag or digest")
    return problems


def _probe_path(container: Obj, probe: str) -> str | None:
    spec = container.get(probe)
    if not spec:
        return None
    path: str | None = (spec.get("httpGet") or {}).get("path")
    return path


def workload_problems(objs: list[Obj]) -> list[str]:
    """Per service: a hardened Deployment with resources, probes, shutdown timing, keys and
    production settings; a Service, an HPA, a PDB and a NetworkPolicy that select its pods;
    a migration Job for the services with a database. Every other workload: hardened."""
    problems: list[str] = []
    policies = of_kind(objs, "NetworkPolicy")
    for workload in of_kind(objs, "Deployment") + of_kind(objs, "Job"):
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        problems += _hardening_problems(where, pod_spec(workload))
    for svc in SERVICES:
        dep = find(objs, "Deployment", svc)
        if dep is None:
            problems.append(f"{svc}: no Deployment")
            continue
        spec = pod_spec(dep)
        labels = pod_labels(dep)
        if "replicas" in dep["spec"]:
            problems.append(f"{svc}: spec.replicas is set (the HPA owns the count)")
        main = next((c for c in spec["containers"] if c["name"] == svc), None)
        if main is None:
            problems.append(f"{svc}: no container named {svc}")
            continue
        ports = [p.get("containerPort") for p in main.get("ports", [])]
        if ports != [PORTS[svc]]:
            problems.append(f"{svc}: container ports {ports} != [{PORTS[svc]}]")
        if (_probe_path(main, "readinessProbe") or "").split("?")[0] != "/readyz":
            problems.append(f"{svc}: no readinessProbe on /readyz")
        if _probe_path(main, "livenessProbe") != "/livez":
            problems.append(f"{svc}: no livenessProbe on /livez")
        if _probe_path(main, "startupProbe") not in {"/readyz", "/livez"}:
            problems.append(f"{svc}: no startupProbe on /readyz or /livez")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        pre_stop = ((main.get("lifecycle") or {}).get("preStop") or {}).get("exec", {})
        command = pre_stop.get("command") or []
        if len(command) != 2 or not command[0].endswith("sleep") or not command[1].isdigit():
            problems.append(f"{svc}: no preStop sleep")
        else:
            env = config_env(objs, dep)
            drain = float(env.get(f"{svc.upper()}_SHUTDOWN_DRAIN_SECONDS", "0"))
            total = int(command[1]) + drain + dockerfile_graceful_timeout(svc)
            if int(command[1]) >= grace:
                problems.append(f"{svc}: preStop sleep {command[1]}s >= grace period {grace}s")
            if total >= grace:
                problems.append(
                    f"{svc}: preStop + drain + graceful shutdown = {total}s >= grace {grace}s"
                )
        env = config_env(objs, dep)
        if env.get(f"{svc.upper()}_ENVIRONMENT") != "production":
            problems.append(f"{svc}: {svc.upper()}_ENVIRONMENT is not production")
        if "*" in env.get("FORWARDED_ALLOW_IPS", ""):
            problems.append(f"{svc}: FORWARDED_ALLOW_IPS trusts every address")
        problems += _keys_problems(svc, spec, main)
        if svc in DB_SERVICES:
            url_var = f"{svc.upper()}_DATABASE_URL"
            url = next(
                (e.get("value", "") for e in main.get("env", []) if e["name"] == url_var), ""
            )
            if f"//{svc}:" not in url or f"@essc-pg-rw:5432/{svc}" not in url:
                problems.append(
                    f"{svc}: database URL {url!r} is not role {svc} on essc-pg-rw/{svc}"
                )
        problems += _companions_problems(objs, svc, labels, policies)
    return problems


def _keys_problems(svc: str, spec: Obj, main: Obj) -> list[str]:
    problems: list[str] = []
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounted = {m["mountPath"]: m for m in main.get("volumeMounts", [])}
    keys = mounted.get(KEYS_DIR)
    if keys is None:
        return [f"{svc}: nothing mounted at KEYS_DIR {KEYS_DIR}"]
    if not keys.get("readOnly"):
        problems.append(f"{svc}: keys are mounted writable")
    sources = [
        v
        for v in volumes.values()
        if (v.get("secret") or {}).get("secretName") == f"essc-{svc}-keys"
    ]
    if not sources:
        problems.append(f"{svc}: no volume from Secret essc-{svc}-keys")
    elif keys["name"] != sources[0]["name"]:
        # Copied by an init container (the KeyStore needs mode 0600): check it copies into it.
        copiers = [
            c
            for c in spec.get("initContainers", [])
            if {m["name"] for m in c.get("volumeMounts", [])} >= {keys["name"], sources[0]["name"]}
        ]
        if not copiers:
            problems.append(f"{svc}: no init container fills {KEYS_DIR} from the keys Secret")
    return problems


def _companions_problems(
    objs: list[Obj], svc: str, labels: Mapping[str, str], policies: list[Obj]
) -> list[str]:
    problems: list[str] = []
    service = find(objs, "Service", svc)
    if service is None or not selector_matches(
        {"matchLabels": service["spec"].get("selector", {})}, labels
    ):
        problems.append(f"{svc}: no Service selecting its pods")
    elif [p.get("port") for p in service["spec"]["ports"]] != [PORTS[svc]]:
        problems.append(f"{svc}: Service ports are not [{PORTS[svc]}]")
    hpa = next(
        (
            h
            for h in of_kind(objs, "HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"]
            == {"apiVersion": "apps/v1", "kind": "Deployment", "name": svc}
        ),
        None,
    )
    if hpa is None:
        problems.append(f"{svc}: no HorizontalPodAutoscaler")
    else:
        if hpa["apiVersion"] != "autoscaling/v2":
            problems.append(f"{svc}: HPA is not autoscaling/v2")
        cpu = [
            m
            for m in hpa["spec"].get("metrics", [])
            if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"
        ]
        if not cpu or cpu[0]["resource"]["target"].get("type") != "Utilization":
            problems.append(f"{svc}: HPA has no CPU utilisation target")
        down = ((hpa["spec"].get("behavior") or {}).get("scaleDown") or {}).get(
            "stabilizationWindowSeconds"
        )
        if not down or down < 60:
            problems.append(f"{svc}: HPA has no scale-down stabilisation window (>= 60 s)")
        if hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
            problems.append(f"{svc}: HPA minReplicas > maxReplicas")
    if not any(
        selector_matches(p["spec"]["selector"], labels)
        for p in of_kind(objs, "PodDisruptionBudget")
    ):
        problems.append(f"{svc}: no PodDisruptionBudget selecting its pods")
    own = [
        p
        for p in policies
        if p["spec"].get("podSelector")
        and p["spec"]["podSelector"] != {}
        and selector_matches(p["spec"]["podSelector"], labels)
    ]
    if not own:
        problems.append(f"{svc}: no NetworkPolicy of its own")
    job = find(objs, "Job", f"{svc}-migrate")
    if svc in DB_SERVICES:
        if job is None:
            problems.append(f"{svc}: no migration Job")
        else:
            containers = pod_spec(job)["containers"]
            if [c.get("command") for c in containers] != [["python", "-m", svc, "migrate"]]:
                problems.append(f"{svc}: migration Job does not run `python -m {svc} migrate`")
            if pod_spec(job).get("restartPolicy") != "Never":
                problems.append(f"{svc}: migration Job restarts in place")
    elif job is not None:
        problems.append(f"{svc}: has a migration Job but no database")
    return problems


# ---- network policies -------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A pod (or an address outside the cluster) that a network policy may admit or refuse."""

    name: str
    namespace: str | None  # None: outside the cluster, reachable only through ipBlock
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    listens: tuple[str, ...] = ()  # "8001/TCP"


def _svc_pod(name: str, component: str, ip: str, listens: tuple[str, ...] = ()) -> Endpoint:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}
    return Endpoint(
        name if component != "migrate" else f"migrate-{name}", NAMESPACE, ip, labels, listens
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    _svc_pod("gateway", "api", "10.1.0.1", ("8000/TCP",)),
    _svc_pod("identity", "api", "10.1.0.2", ("8001/TCP",)),
    _svc_pod("issuance", "api", "10.1.0.3", ("8002/TCP",)),
    _svc_pod("settlement", "api", "10.1.0.4", ("8003/TCP",)),
    _svc_pod("identity", "migrate", "10.1.0.12"),
    _svc_pod("issuance", "migrate", "10.1.0.13"),
    _svc_pod("settlement", "migrate", "10.1.0.14"),
    Endpoint(
        "postgres",
        NAMESPACE,
        "10.1.0.20",
        {"cnpg.io/cluster": "essc-pg", "cnpg.io/podRole": "instance"},
        ("5432/TCP", "8000/TCP"),
    ),
    Endpoint(
        "redis",
        NAMESPACE,
        "10.1.0.30",
        {"app.kubernetes.io/name": "redis", "app.kubernetes.io/component": "cache"},
        ("6379/TCP",),
    ),
    Endpoint(
        "ingress-controller",
        "ingress-nginx",
        "10.2.0.1",
        {"app.kubernetes.io/name": "ingress-nginx"},
    ),
    Endpoint("prometheus", "monitoring", "10.2.0.2", {"app.kubernetes.io/name": "prometheus"}),
    Endpoint(
        "cnpg-operator", "cnpg-system", "10.2.0.3", {"app.kubernetes.io/name": "cloudnative-pg"}
    ),
    Endpoint("kube-dns", "kube-system", "10.2.0.4", {"k8s-app": "kube-dns"}, ("53/UDP", "53/TCP")),
    # Any other workload in the cluster, listening on every port our pods use.
    Endpoint(
        "other-pod",
        "default",
        "10.2.0.9",
        {"app": "other"},
        ("443/TCP", "5432/TCP", "6379/TCP", "8000/TCP", "8001/TCP", "8002/TCP", "8003/TCP"),
    ),
    Endpoint("kube-apiserver", None, "10.0.0.1", listens=("443/TCP", "6443/TCP")),
    Endpoint("cloud-metadata", None, "169.254.169.254", listens=("80/TCP", "443/TCP")),
    Endpoint("internet", None, "203.0.113.7", listens=("443/TCP", "80/TCP")),
)

# Service-to-service calls. A callee verifies the caller's internal token with the caller's
# /internal/jwks.json, so each call A -> B also needs B -> A (JWKS); every service fetches
# the gateway's /internal/jwks.json. Hence identity -> issuance and identity -> settlement.
SERVICE_EDGES: frozenset[tuple[str, str]] = frozenset(
    {
        ("gateway", "identity"),
        ("gateway", "issuance"),
        ("gateway", "settlement"),
        ("issuance", "identity"),
        ("issuance", "settlement"),
        ("settlement", "identity"),
        ("settlement", "issuance"),
        ("identity", "gateway"),
        ("issuance", "gateway"),
        ("settlement", "gateway"),
        ("identity", "issuance"),  # JWKS: issuance calls identity
        ("identity", "settlement"),  # JWKS: settlement calls identity
    }
)


def expected_matrix() -> set[tuple[str, str, str]]:
    """Every connection the platform needs, and so the only ones the policies may allow."""
    allowed = {(a, b, f"{PORTS[b]}/TCP") for a, b in SERVICE_EDGES}
    allowed.add(("ingress-controller", "gateway", "8000/TCP"))
    for svc in SERVICES:
        allowed.add(("prometheus", svc, f"{PORTS[svc]}/TCP"))
        allowed.add((svc, "redis", "6379/TCP"))
    for svc in DB_SERVICES:
        allowed.add((svc, "postgres", "5432/TCP"))
        allowed.add((f"migrate-{svc}", "postgres", "5432/TCP"))
    for port in ("5432/TCP", "8000/TCP"):
        allowed.add(("postgres", "postgres", port))
        allowed.add(("cnpg-operator", "postgres", port))
    allowed |= {
        ("postgres", "kube-apiserver", "443/TCP"),
        ("postgres", "kube-apiserver", "6443/TCP"),
        ("postgres", "internet", "443/TCP"),
        # The Kubernetes API's address differs per cluster, so the database pods may open 443
        # to any address but link-local, other pods included (deploy/k8s/base/platform).
        ("postgres", "other-pod", "443/TCP"),
        ("identity", "internet", "443/TCP"),  # partners' jwks_uri
        ("issuance", "internet", "443/TCP"),  # partner webhooks
    }
    for ep in ENDPOINTS:
        if ep.namespace == NAMESPACE:
            allowed.add((ep.name, "kube-dns", "53/UDP"))
            allowed.add((ep.name, "kube-dns", "53/TCP"))
    return allowed


def _peer_matches(peer: Obj, ep: Endpoint, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(ep.ip)
        if ip not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if ep.namespace is None:
        return False
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": ep.namespace}
        if not selector_matches(peer["namespaceSelector"] or {}, ns_labels):
            return False
    elif ep.namespace != policy_ns:
        return False
    if "podSelector" in peer:
        return selector_matches(peer["podSelector"] or {}, ep.labels)
    return True


def _port_matches(rule_ports: list[Obj] | None, port: str) -> bool:
    if not rule_ports:
        return True
    number, proto = port.split("/")
    for p in rule_ports:
        if not isinstance(p.get("port", 0), int):
            raise ValueError(f"named port {p['port']!r} in a NetworkPolicy: use numbers")
        if p.get("protocol", "TCP") != proto:
            continue
        low: int | None = p.get("port")
        if low is None or low <= int(number) <= int(p.get("endPort", low)):
            return True
    return False


def _types(policy: Obj) -> list[str]:
    types: list[str] = policy["spec"].get("policyTypes") or (
        ["Ingress", "Egress"] if "egress" in policy["spec"] else ["Ingress"]
    )
    return types


def _admits(
    policies: list[Obj], direction: str, subject: Endpoint, peer: Endpoint, port: str
) -> bool:
    if subject.namespace != NAMESPACE:
        return True  # outside our namespace: not ours to police here
    kind, rules_key, peers_key = (
        ("Egress", "egress", "to") if direction == "egress" else ("Ingress", "ingress", "from")
    )
    selecting = [
        p
        for p in policies
        if kind in _types(p)
        and p["metadata"].get("namespace", NAMESPACE) == subject.namespace
        and selector_matches(p["spec"].get("podSelector") or {}, subject.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            ns = policy["metadata"].get("namespace", NAMESPACE)
            if (not peers or any(_peer_matches(x, peer, ns) for x in peers)) and _port_matches(
                rule.get("ports"), port
            ):
                return True
    return False


def network_matrix(objs: list[Obj]) -> set[tuple[str, str, str]]:
    """Every (source, destination, port) the rendered NetworkPolicies allow that involves a pod
    of our namespace, over the modelled endpoints."""
    policies = of_kind(objs, "NetworkPolicy")
    allowed: set[tuple[str, str, str]] = set()
    for src in ENDPOINTS:
        for dst in ENDPOINTS:
            if NAMESPACE not in (src.namespace, dst.namespace) or src.namespace is None:
                continue
            for port in dst.listens:
                if _admits(policies, "egress", src, dst, port) and _admits(
                    policies, "ingress", dst, src, port
                ):
                    allowed.add((src.name, dst.name, port))
    return allowed


# ---- database isolation, secrets, connection budget, overlays ---------------------------------


def database_problems(objs: list[Obj]) -> list[str]:
    """A 3-instance CloudNativePG cluster; per service a role, a database it owns, and pg_hba
    lines that admit that role to that database only."""
    problems: list[str] = []
    clusters = of_kind(objs, "Cluster")
    if len(clusters) != 1:
        return [f"expected one CloudNativePG Cluster, found {len(clusters)}"]
    cluster = clusters[0]
    spec = cluster["spec"]
    name = cluster["metadata"]["name"]
    if spec.get("instances") != 3:
        problems.append(f"Cluster {name}: instances {spec.get('instances')} != 3")
    hba = [" ".join(line.split()) for line in spec.get("postgresql", {}).get("pg_hba", [])]
    roles = {r["name"]: r for r in spec.get("managed", {}).get("roles", [])}
    for svc in DB_SERVICES:
        role = roles.get(svc)
        if role is None or not role.get("login"):
            problems.append(f"{svc}: no login role")
        elif (role.get("passwordSecret") or {}).get("name") != f"essc-{svc}-db":
            problems.append(f"{svc}: role password not from Secret essc-{svc}-db")
        db = next((d for d in of_kind(objs, "Database") if d["spec"]["name"] == svc), None)
        if db is None:
            problems.append(f"{svc}: no Database")
        elif db["spec"]["owner"] != svc or db["spec"]["cluster"]["name"] != name:
            problems.append(f"{svc}: database not owned by {svc} on {name}")
        if f"hostssl {svc} {svc} all scram-sha-256" not in hba:
            problems.append(f"{svc}: pg_hba does not admit role {svc} to database {svc}")
    reject = [line for line in hba if line.endswith(" reject")]
    if (
        not reject
        or set(reject[-1].split()[1].split(",")) != set(DB_SERVICES)
        or hba[-1] != reject[-1]
    ):
        problems.append("pg_hba does not end by rejecting everyone else from the service databases")
    return problems


def secret_references(objs: list[Obj]) -> set[tuple[str, str | None]]:
    """(Secret name, key or None) referenced anywhere in the manifests."""
    refs: set[tuple[str, str | None]] = set()
    for obj in objs:
        if obj["kind"] in {"Deployment", "Job"}:
            spec = pod_spec(obj)
            for c in all_containers(spec):
                for e in c.get("env", []):
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        refs.add((ref["name"], ref["key"]))
                for src in c.get("envFrom", []):
                    if "secretRef" in src:
                        refs.add((src["secretRef"]["name"], None))
            for v in spec.get("volumes", []):
                if "secret" in v:
                    refs.add((v["secret"]["secretName"], None))
        elif obj["kind"] == "Cluster":
            for role in obj["spec"].get("managed", {}).get("roles", []):
                if "passwordSecret" in role:
                    refs.add((role["passwordSecret"]["name"], "password"))
        elif obj["kind"] == "Ingress":
            for tls in obj["spec"].get("tls", []):
                refs.add((tls["secretName"], None))
    return refs


def _surge(deployment: Obj, replicas: int) -> int:
    surge = str(
        ((deployment["spec"].get("strategy") or {}).get("rollingUpdate") or {}).get(
            "maxSurge", "25%"
        )
    )
    if surge.endswith("%"):
        return math.ceil(replicas * int(surge[:-1]) / 100)
    return int(surge)


def connection_budget_problems(objs: list[Obj], reserved: int = 13) -> list[str]:
    """At the HPA ceiling plus the rolling update's surge, each service's pools fit its role's
    connectionLimit (one left for its migration Job), and all fit max_connections less the
    superuser reserve and a margin for operators."""
    problems: list[str] = []
    cluster = of_kind(objs, "Cluster")[0]["spec"]
    max_connections = int(cluster["postgresql"]["parameters"]["max_connections"])
    limits = {r["name"]: r.get("connectionLimit", -1) for r in cluster["managed"]["roles"]}
    total = 0
    for svc in DB_SERVICES:
        dep = find(objs, "Deployment", svc)
        hpa = find(objs, "HorizontalPodAutoscaler", svc)
        if dep is None or hpa is None:
            problems.append(f"{svc}: no Deployment or HPA to size the pool")
            continue
        env = config_env(objs, dep)
        per_pod = int(env.get(f"{svc.upper()}_DB_POOL_SIZE", "10")) + int(
            env.get(f"{svc.upper()}_DB_MAX_OVERFLOW", "10")
        )
        pods = hpa["spec"]["maxReplicas"] + _surge(dep, hpa["spec"]["maxReplicas"])
        need = pods * per_pod + 1
        total += need
        if limits.get(svc, -1) != -1 and need > limits[svc]:
            problems.append(
                f"{svc}: {pods} pods x {per_pod} + 1 = {need} > role limit {limits[svc]}"
            )
    if total > max_connections - reserved:
        problems.append(f"all services need {total} connections > {max_connections} - {reserved}")
    return problems


def ingress_problems(objs: list[Obj]) -> list[str]:
    problems: list[str] = []
    ingresses = of_kind(objs, "Ingress")
    if len(ingresses) != 1:
        return [f"expected one Ingress, found {len(ingresses)}"]
    spec = ingresses[0]["spec"]
    hosts = {r["host"] for r in spec["rules"]}
    tls_hosts = {h for t in spec.get("tls", []) for h in t["hosts"]}
    if not hosts or not hosts <= tls_hosts:
        problems.append(f"Ingress hosts {hosts} are not all served with TLS {tls_hosts}")
    for rule in spec["rules"]:
        for path in rule["http"]["paths"]:
            if path["backend"]["service"]["name"] != "gateway":
                problems.append(
                    f"Ingress routes {path['path']} to {path['backend']['service']['name']}"
                )
            if path["path"] in {"/", "/metrics", "/livez", "/readyz"} or path["path"].startswith(
                "/internal"
            ):
                problems.append(f"Ingress exposes {path['path']}")
    return problems


def namespace_problems(objs: list[Obj]) -> list[str]:
    problems = []
    for obj in objs:
        if obj["kind"] == "Namespace":
            labels = obj["metadata"].get("labels", {})
            if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
                problems.append("namespace does not enforce the restricted Pod Security Standard")
        elif obj["metadata"].get("namespace") != NAMESPACE:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']} is not in {NAMESPACE}")
    return problems
