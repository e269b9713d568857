"""The CloudNativePG fields deploy/k8s uses, as a closed JSON Schema (an explicit allow-list).

Source: the operator's CRDs, ``config/crd/bases/postgresql.cnpg.io_clusters.yaml`` and
``postgresql.cnpg.io_databases.yaml`` (CloudNativePG 1.25-1.27, API ``postgresql.cnpg.io/v1``),
read by hand: the CRDs could not be vendored (no package registry ships them), so this lists
only the fields our manifests set, with the CRD's types, enums and required fields, and
``additionalProperties: false`` everywhere, so that a misspelt or unknown field fails here
instead of at ``kubectl apply``. Add a field here, from the CRD, before using it.
"""

from __future__ import annotations

from typing import Any


def _closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


_STRING = {"type": "string"}
_BOOL = {"type": "boolean"}
_INT = {"type": "integer"}
_LOCAL_REF = _closed({"name": _STRING}, ["name"])
_QUANTITIES = {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}
_METADATA = _closed(
    {
        "name": _STRING,
        "namespace": _STRING,
        "labels": {"type": "object", "additionalProperties": _STRING},
        "annotations": {"type": "object", "additionalProperties": _STRING},
    },
    ["name"],
)
_STORAGE = _closed({"size": _STRING, "storageClass": _STRING, "resizeInUseVolumes": _BOOL})

# ClusterSpec (the subset we set).
CLUSTER: dict[str, Any] = _closed(
    {
        "apiVersion": {"const": "postgresql.cnpg.io/v1"},
        "kind": {"const": "Cluster"},
        "metadata": _METADATA,
        "spec": _closed(
            {
                "instances": {"type": "integer", "minimum": 1},
                "imageName": _STRING,
                "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
                "primaryUpdateMethod": {"enum": ["switchover", "restart"]},
                "enableSuperuserAccess": _BOOL,
                "bootstrap": _closed(
                    {
                        "initdb": _closed(
                            {
                                "database": _STRING,
                                "owner": _STRING,
                                "secret": _LOCAL_REF,
                                "dataChecksums": _BOOL,
                            }
                        )
                    }
                ),
                "postgresql": _closed(
                    {
                        "parameters": {"type": "object", "additionalProperties": _STRING},
                        "pg_hba": {"type": "array", "items": _STRING},
                        "synchronous": _closed(
                            {
                                "method": {"enum": ["any", "first"]},
                                "number": {"type": "integer", "minimum": 1},
                                "dataDurability": {"enum": ["required", "preferred"]},
                            },
                            ["method", "number"],
                        ),
                    }
                ),
                "managed": _closed(
                    {
                        "roles": {
                            "type": "array",
                            "items": _closed(
                                {
                                    "name": _STRING,
                                    "ensure": {"enum": ["present", "absent"]},
                                    "login": _BOOL,
                                    "inherit": _BOOL,
                                    "superuser": _BOOL,
                                    "createdb": _BOOL,
                                    "createrole": _BOOL,
                                    "replication": _BOOL,
                                    "bypassrls": _BOOL,
                                    "connectionLimit": _INT,
                                    "comment": _STRING,
                                    "inRoles": {"type": "array", "items": _STRING},
                                    "passwordSecret": _LOCAL_REF,
                                },
                                ["name"],
                            ),
                        }
                    }
                ),
                "storage": _STORAGE,
                "walStorage": _STORAGE,
                "resources": _closed({"requests": _QUANTITIES, "limits": _QUANTITIES}),
                "affinity": _closed(
                    {
                        "enablePodAntiAffinity": _BOOL,
                        "topologyKey": _STRING,
                        "podAntiAffinityType": {"enum": ["preferred", "required"]},
                    }
                ),
            },
            ["instances"],
        ),
    },
    ["apiVersion", "kind", "metadata", "spec"],
)

# DatabaseSpec (the subset we set); name, owner and cluster are required by the CRD.
DATABASE: dict[str, Any] = _closed(
    {
        "apiVersion": {"const": "postgresql.cnpg.io/v1"},
        "kind": {"const": "Database"},
        "metadata": _METADATA,
        "spec": _closed(
            {
                "name": {"type": "string", "not": {"enum": ["postgres", "template0", "template1"]}},
                "owner": _STRING,
                "cluster": _LOCAL_REF,
                "ensure": {"enum": ["present", "absent"]},
                "databaseReclaimPolicy": {"enum": ["delete", "retain"]},
            },
            ["cluster", "name", "owner"],
        ),
    },
    ["apiVersion", "kind", "metadata", "spec"],
)

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("postgresql.cnpg.io/v1", "Cluster"): CLUSTER,
    ("postgresql.cnpg.io/v1", "Database"): DATABASE,
}
