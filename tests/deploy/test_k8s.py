"""The Kubernetes manifests, rendered from every overlay with ``kubectl kustomize`` and checked
offline: schemas, workloads, network policies, database isolation, secrets, connection budget.
Each checker is also shown to catch a broken manifest."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path

import kubernetes_validate
import pytest

from devkit.k8s_secrets import build_secrets, key_purposes
from shared.fieldcrypto import load_data_keys
from shared.tokens.keys import KeyStore
from support.k8s_checks import (
    DB_SERVICES,
    K8S_VERSIONS,
    OVERLAYS,
    SERVICES,
    Obj,
    connection_budget_problems,
    database_problems,
    expected_matrix,
    find,
    ingress_problems,
    kubectl,
    must,
    namespace_problems,
    network_matrix,
    of_kind,
    pod_spec,
    render,
    schema_problems,
    secret_references,
    workload_problems,
)

pytestmark = pytest.mark.skipif(
    kubectl() is None, reason="kubectl is not installed: the Kustomize overlays cannot be rendered"
)

TLS_SECRET = "essc-gateway-tls"  # from cert-manager or the operator's certificate process


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    return {name: render(path) for name, path in OVERLAYS.items()}


def broken(objs: list[Obj], mutate: Callable[[list[Obj]], object]) -> list[Obj]:
    copied = copy.deepcopy(objs)
    mutate(copied)
    return copied


def main_container(objs: list[Obj], svc: str) -> Obj:
    dep = find(objs, "Deployment", svc)
    assert dep is not None
    container: Obj = next(c for c in pod_spec(dep)["containers"] if c["name"] == svc)
    return container


# ---- every overlay ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_every_object_validates_against_its_schema(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objs = rendered[overlay]
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"NetworkPolicy", "Job", "Ingress", "ConfigMap", "Cluster", "Database"} <= kinds
    assert schema_problems(objs) == []


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_every_service_is_complete_and_hardened(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    assert workload_problems(rendered[overlay]) == []


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_network_policies_allow_exactly_the_call_graph(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    actual = network_matrix(rendered[overlay])
    expected = expected_matrix()
    assert sorted(actual - expected) == [], "allowed but not needed"
    assert sorted(expected - actual) == [], "needed but not allowed"


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_each_service_reaches_only_its_own_database(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    assert database_problems(rendered[overlay]) == []


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_connection_pools_fit_postgres_at_the_hpa_ceiling(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    assert connection_budget_problems(rendered[overlay]) == []


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_ingress_and_namespace(rendered: dict[str, list[Obj]], overlay: str) -> None:
    assert ingress_problems(rendered[overlay]) == []
    assert namespace_problems(rendered[overlay]) == []


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_every_referenced_secret_is_provisioned_and_none_is_committed(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objs = rendered[overlay]
    assert of_kind(objs, "Secret") == [], "Secrets are made out of band, never committed"
    made = build_secrets("essc")
    provided: set[tuple[str, str | None]] = set()
    for secret in made:
        name = secret["metadata"]["name"]
        provided.add((name, None))
        provided |= {(name, key) for key in secret["stringData"]}
    missing = sorted(
        ref for ref in secret_references(objs) if ref not in provided and ref[0] != TLS_SECRET
    )
    assert missing == []


# ---- per overlay ------------------------------------------------------------------------------


def test_dev_runs_one_replica_of_each_service(rendered: dict[str, list[Obj]]) -> None:
    for svc in SERVICES:
        hpa = find(rendered["dev"], "HorizontalPodAutoscaler", svc)
        assert hpa is not None
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 1), svc
        pdb = find(rendered["dev"], "PodDisruptionBudget", svc)
        assert pdb is not None
        assert pdb["spec"] == pdb["spec"] | {"maxUnavailable": 1}


def test_prod_floors_budgets_and_spread(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["prod"]
    floors = {}
    for svc in SERVICES:
        hpa = find(objs, "HorizontalPodAutoscaler", svc)
        assert hpa is not None
        floors[svc] = hpa["spec"]["minReplicas"]
        assert hpa["spec"]["minReplicas"] >= 3, svc
        assert hpa["spec"]["maxReplicas"] >= 4 * hpa["spec"]["minReplicas"], svc
        pdb = find(objs, "PodDisruptionBudget", svc)
        assert pdb is not None
        assert pdb["spec"].get("minAvailable") == "80%"
        assert "maxUnavailable" not in pdb["spec"]
        dep = find(objs, "Deployment", svc)
        assert dep is not None
        keys = {t["topologyKey"] for t in pod_spec(dep).get("topologySpreadConstraints", [])}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, svc
        for c in pod_spec(dep)["containers"]:
            assert not c["image"].endswith(":dev"), c["image"]
    # The scan path (gateway + issuance) starts widest.
    assert floors["gateway"] >= floors["settlement"]
    assert floors["issuance"] >= floors["settlement"]
    cluster = of_kind(objs, "Cluster")[0]["spec"]
    assert cluster["affinity"]["podAntiAffinityType"] == "required"
    assert cluster["affinity"]["topologyKey"] == "topology.kubernetes.io/zone"


# ---- the generated secrets --------------------------------------------------------------------


def test_generated_secrets_validate_and_hold_usable_keys(tmp_path: Path) -> None:
    made = build_secrets("essc")
    again = build_secrets("essc", only=("db",))
    for secret in made:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(secret, version, strict=True)
    by_name = {s["metadata"]["name"]: s["stringData"] for s in made}
    for svc in DB_SERVICES:
        password = by_name[f"essc-{svc}-db"]["password"]
        assert len(password) == 48
        assert all(c in "0123456789abcdef" for c in password)
        assert by_name[f"essc-{svc}-db"]["username"] == svc
    assert {s["stringData"]["password"] for s in again}.isdisjoint(
        {by_name[f"essc-{svc}-db"]["password"] for svc in DB_SERVICES}
    )
    for part in SERVICES:
        files = by_name[f"essc-{part}-keys"]
        directory = tmp_path / part
        directory.mkdir()
        for filename, content in files.items():
            path = directory / filename
            path.write_text(content)
            os.chmod(path, 0o600)
        ring = KeyStore(directory).load()
        for purpose in key_purposes(part):
            assert ring.signing_key(purpose).purpose == purpose
        assert ("data.json" in files) == (part in {"identity", "issuance"})
        if "data.json" in files:
            keys = load_data_keys(directory / "data.json", create=False)
            assert keys is not None
            assert set(json.loads(files["data.json"])) == {"encryption", "blind_index"}


# ---- the checkers catch what they claim to ----------------------------------------------------


def test_schema_check_catches_a_misspelt_field(rendered: dict[str, list[Obj]]) -> None:
    def typo(objs: list[Obj]) -> None:
        main_container(objs, "identity")["readinesProbe"] = {"httpGet": {"path": "/readyz"}}

    def crd_typo(objs: list[Obj]) -> None:
        of_kind(objs, "Cluster")[0]["spec"]["instance"] = 3

    def crd_missing(objs: list[Obj]) -> None:
        del of_kind(objs, "Database")[0]["spec"]["owner"]

    assert any("readinesProbe" in p for p in schema_problems(broken(rendered["prod"], typo)))
    assert any("'instance'" in p for p in schema_problems(broken(rendered["prod"], crd_typo)))
    assert any("'owner'" in p for p in schema_problems(broken(rendered["prod"], crd_missing)))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda o: main_container(o, "identity").pop("readinessProbe"),
            "identity: no readinessProbe on /readyz",
        ),
        (
            lambda o: main_container(o, "gateway").pop("livenessProbe"),
            "gateway: no livenessProbe on /livez",
        ),
        (
            lambda o: main_container(o, "settlement")["resources"].pop("limits"),
            "Deployment/settlement/settlement: no cpu limits",
        ),
        (
            lambda o: o.remove(must(find(o, "HorizontalPodAutoscaler", "settlement"))),
            "settlement: no HorizontalPodAutoscaler",
        ),
        (
            lambda o: o.remove(must(find(o, "PodDisruptionBudget", "issuance"))),
            "issuance: no PodDisruptionBudget selecting its pods",
        ),
        (
            lambda o: o.remove(must(find(o, "NetworkPolicy", "identity"))),
            "identity: no NetworkPolicy of its own",
        ),
        (
            lambda o: o.remove(must(find(o, "Job", "issuance-migrate"))),
            "issuance: no migration Job",
        ),
        (
            lambda o: pod_spec(must(find(o, "Deployment", "issuance")))["securityContext"].update(
                runAsNonRoot=False
            ),
            "Deployment/issuance: pod securityContext.runAsNonRoot is not true",
        ),
        (
            lambda o: main_container(o, "gateway")["lifecycle"]["preStop"]["exec"].update(
                command=["/bin/sleep", "40"]
            ),
            "gateway: preStop sleep 40s >= grace period 30s",
        ),
    ],
)
def test_workload_check_catches(
    rendered: dict[str, list[Obj]], mutate: Callable[[list[Obj]], object], expected: str
) -> None:
    assert workload_problems(rendered["prod"]) == []
    assert expected in workload_problems(broken(rendered["prod"], mutate))


def test_network_check_catches_an_extra_and_a_missing_path(rendered: dict[str, list[Obj]]) -> None:
    def open_gateway(objs: list[Obj]) -> None:
        policy = find(objs, "NetworkPolicy", "gateway")
        assert policy is not None
        policy["spec"]["ingress"].append({"from": [{"namespaceSelector": {}}]})

    def drop_settlement_policy(objs: list[Obj]) -> None:
        objs.remove(must(find(objs, "NetworkPolicy", "settlement")))

    def drop_it_and_default_deny(objs: list[Obj]) -> None:
        drop_settlement_policy(objs)
        objs.remove(must(find(objs, "NetworkPolicy", "default-deny")))

    def drop_dns(objs: list[Obj]) -> None:
        objs.remove(must(find(objs, "NetworkPolicy", "allow-dns")))

    extra = network_matrix(broken(rendered["prod"], open_gateway)) - expected_matrix()
    assert ("other-pod", "gateway", "8000/TCP") in extra
    closed = network_matrix(broken(rendered["prod"], drop_settlement_policy))
    assert ("gateway", "settlement", "8003/TCP") in expected_matrix() - closed  # default deny
    unguarded = network_matrix(broken(rendered["prod"], drop_it_and_default_deny))
    assert ("other-pod", "settlement", "8003/TCP") in unguarded
    no_dns = network_matrix(broken(rendered["prod"], drop_dns))
    assert ("gateway", "kube-dns", "53/UDP") in expected_matrix() - no_dns


def test_database_and_budget_checks_catch(rendered: dict[str, list[Obj]]) -> None:
    def open_hba(objs: list[Obj]) -> None:
        hba = of_kind(objs, "Cluster")[0]["spec"]["postgresql"]["pg_hba"]
        hba.remove("hostssl settlement settlement all scram-sha-256")
        hba.insert(0, "host all all all scram-sha-256")

    def huge_hpa(objs: list[Obj]) -> None:
        hpa = find(objs, "HorizontalPodAutoscaler", "issuance")
        assert hpa is not None
        hpa["spec"]["maxReplicas"] = 200

    problems = database_problems(broken(rendered["prod"], open_hba))
    assert "settlement: pg_hba does not admit role settlement to database settlement" in problems
    budget = connection_budget_problems(broken(rendered["prod"], huge_hpa))
    assert any(p.startswith("issuance: 250 pods x 8") for p in budget), budget
