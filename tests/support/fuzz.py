"""Schemathesis runs over our OpenAPI documents: budget, auth by client kind, checks, a report.

Every run uses the engine the ``schemathesis run`` command uses (examples, coverage,
fuzzing and stateful phases, a fixed seed), with these checks:

- ``not_a_server_error``: no 5xx;
- ``status_code_conformance``: every returned status is documented for the operation;
- ``content_type_conformance`` and ``response_schema_conformance``;
- ``negative_data_rejection``: schema-violating input is refused with a 4xx (switched off
  per operation where the contract says otherwise, see :data:`NEGATIVE_DATA_ACCEPTED`);
- ``ignored_auth`` (where the document declares security: the gateway's);
- :func:`problem_details` (ours): an error answer documented as ``application/problem+json``
  is problem+json, and its ``status`` member equals the HTTP status.

Requests carry the bearer token of the client kind chosen for their operation by
:class:`KindAuth`; tokens are minted again before they expire, so long runs
(``make fuzz``) keep their credentials. The budget comes from the environment:
``ESSC_FUZZ_EXAMPLES`` (per operation and phase), ``ESSC_FUZZ_SEED``,
``ESSC_FUZZ_STATEFUL_STEPS``, ``ESSC_FUZZ_UNEXPECTED_METHODS``; ``make fuzz`` raises
them. Each run writes ``<output>/fuzz/<label>.json``: operations, cases per phase,
failures.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, from_schema
from schemathesis.engine import events as ev

from gateway.routes import ROUTES, Route
from shared.tokens.claims import ClientKind

SEED = int(os.environ.get("ESSC_FUZZ_SEED", "20261127"))
EXAMPLES = int(os.environ.get("ESSC_FUZZ_EXAMPLES", "3"))
STATEFUL_STEPS = int(os.environ.get("ESSC_FUZZ_STATEFUL_STEPS", "5"))
# The coverage phase also sends each operation every other HTTP method (405 expected);
# CI sends one (the answer is the same generic 405 problem), ``make fuzz`` all of them.
UNEXPECTED_METHODS = [
    m for m in os.environ.get("ESSC_FUZZ_UNEXPECTED_METHODS", "TRACE").split(",") if m
]
PHASES = ("examples", "coverage", "fuzzing", "stateful")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "ignored_auth",
    "problem_details",
)

# Operations whose contract accepts schema-violating parts on purpose: the holder import
# validates row by row and answers 200 with the refused rows listed (API.md "Operations").
NEGATIVE_DATA_ACCEPTED = (("POST", "/v1/admin/holders"),)

Caller = str
"""A client kind (``partner_app``, ...), ``service:<name>`` for a peer service, or ``public``."""

PUBLIC = "public"


def gateway_caller(route: Route) -> Caller:
    """The first kind a route admits (``hospital`` before ``scanner``), or public."""
    if route.public:
        return PUBLIC
    order = [ClientKind.PARTNER_APP, ClientKind.HOSPITAL, ClientKind.OPS, ClientKind.SCANNER]
    return next(k.value for k in order if k in route.kinds)


def callers_from_routes(
    routes: Iterable[Route] = ROUTES, *, extra: Mapping[tuple[str, str], Caller] | None = None
) -> dict[tuple[str, str], Caller]:
    """(method, template) → the caller the run uses, from the gateway's inventory."""
    out = {(r.method, r.template): gateway_caller(r) for r in routes}
    out.update(extra or {})
    return out


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


@dataclass
class KindAuth:
    """Bearer tokens by operation: ``callers`` picks the caller, ``mint`` signs its token.

    ``override`` forces one caller for every authenticated operation (the cross-kind run:
    each kind against every operation, where the forbidden ones must answer 403).
    """

    callers: Mapping[tuple[str, str], Caller]
    mint: Callable[[Caller], str]
    override: Caller | None = None

    def caller_for(self, method: str, path: str) -> Caller:
        caller = self.callers.get((method.upper(), path), "partner_app")
        if self.override is not None and caller != PUBLIC:
            return self.override
        return caller

    def install(self, schema: Any) -> None:
        outer = self

        @schema.auth(refresh_interval=120)
        class _Auth:
            def get(self, case: Any, ctx: Any) -> dict[Caller, str]:
                names = set(outer.callers.values()) | {outer.override or PUBLIC}
                return {c: outer.mint(c) for c in names if c != PUBLIC}

            def set(self, case: Any, data: dict[Caller, str], ctx: Any) -> None:
                caller = outer.caller_for(case.operation.method, case.operation.path)
                case.headers = dict(case.headers or {})
                if caller != PUBLIC:
                    case.headers["Authorization"] = f"Bearer {data[caller]}"


def real_ids(schema: Any, values: Mapping[str, list[str]]) -> None:
    """Let path parameters also take ids that exist (seeded data), besides generated ones.

    Widens what is generated: a parameter named in ``values`` is either the generated
    value or one of the real ids, so operations reach their code paths past the 404.
    """

    @schema.hook
    def flatmap_path_parameters(ctx: Any, path_parameters: dict[str, Any]) -> Any:
        names = [n for n in (path_parameters or {}) if values.get(n)]
        if not names:
            return st.just(path_parameters)
        real = st.fixed_dictionaries({n: st.sampled_from(values[n]) for n in names})
        return st.one_of(st.just(path_parameters), real.map(lambda r: {**path_parameters, **r}))


@schemathesis.check
def problem_details(ctx: Any, response: Any, case: Any) -> bool | None:
    """An error documented as problem+json is problem+json with ``status`` = the HTTP status."""
    status = response.status_code
    if status < 400:
        return None
    documented = (case.operation.definition.raw.get("responses") or {}).get(str(status))
    if documented is None:
        documented = (case.operation.definition.raw.get("responses") or {}).get("default")
    content = (documented or {}).get("content") or {}
    if content and "application/problem+json" not in content:
        return None  # e.g. the OAuth token endpoint (RFC 6749) or the e-card page's HTML
    ctype = (response.headers.get("content-type") or [""])[0]
    if not ctype.startswith("application/problem+json"):
        raise AssertionError(f"{status} answered as {ctype!r}, not application/problem+json")
    body = json.loads(response.content)
    if not isinstance(body, dict) or body.get("status") != status:
        raise AssertionError(f"problem status {body.get('status')!r} ≠ HTTP {status}")
    for member in ("type", "title", "detail", "instance"):
        if not isinstance(body.get(member), str):
            raise AssertionError(f"problem member {member!r} missing")
    return None


def config(
    *,
    base_url: str | None = None,
    examples: int = EXAMPLES,
    seed: int = SEED,
    phases: Iterable[str] = PHASES,
    stateful_steps: int = STATEFUL_STEPS,
    skip: Iterable[tuple[str, str]] = (),
) -> SchemathesisConfig:
    """The run's configuration: budget, phases, checks, seed; nothing else varies.

    ``skip`` lists (method, path) operations left out of this run (the engine selects
    operations from the configuration, not from ``schema.include``).
    """
    chosen = set(phases)
    project: dict[str, Any] = {
        "seed": seed,
        # No state carried between runs: the same seed gives the same cases.
        "cache": {"enabled": False},
        "workers": 1,
        "generation": {
            "max-examples": examples,
            "database": "none",
            "allow-x00": True,
            "deterministic": False,
        },
        "phases": {
            "examples": {"enabled": "examples" in chosen, "fill-missing": True},
            "coverage": {
                "enabled": "coverage" in chosen,
                "unexpected-methods": UNEXPECTED_METHODS,
            },
            "fuzzing": {"enabled": "fuzzing" in chosen},
            "stateful": {"enabled": "stateful" in chosen, "max-steps": max(2, stateful_steps)},
        },
        "checks": {
            "enabled": False,
            **{name: {"enabled": True} for name in CHECKS},
        },
        "operations": [
            {
                "include-name": f"{method} {path}",
                "checks": {"negative_data_rejection": {"enabled": False}},
            }
            for method, path in NEGATIVE_DATA_ACCEPTED
        ]
        + [{"include-name": f"{m} {p}", "enabled": False} for m, p in skip],
        "request-timeout": 30,
        "suppress-health-check": ["all"],
        "output": {"sanitization": {"enabled": True}},
    }
    if base_url is not None:
        project["base-url"] = base_url
    return SchemathesisConfig.from_dict(project)


@dataclass
class Outcome:
    """What a run did: cases per phase, operations, failures (check, operation, message)."""

    label: str
    seed: int
    examples: int
    operations: set[str] = field(default_factory=set)
    cases: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "seed": self.seed,
            "max_examples": self.examples,
            "operations": len(self.operations),
            "cases": dict(self.cases),
            "total_cases": sum(self.cases.values()),
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "failures": self.failures,
            "errors": self.errors,
        }

    def summary(self) -> str:
        lines = [
            f"{self.label}: {len(self.operations)} operations, cases {dict(self.cases)}, "
            f"seconds {dict((k, round(v, 1)) for k, v in self.seconds.items())}, seed {self.seed}"
        ]
        lines += [f"  FAIL {f['operation']}: {f['title']}: {f['message']}" for f in self.failures]
        lines += [f"  ERROR {e}" for e in self.errors]
        return "\n".join(lines)


def run(schema: Any, label: str, output_dir: Path) -> Outcome:
    """Run every enabled phase over ``schema``; the outcome is also written as JSON."""
    config = schema.config
    outcome = Outcome(label, config.seed, config.generation.max_examples or 0)
    seen: set[tuple[str, str]] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, ev.ScenarioFinished):
            phase = event.phase.value
            recorder = event.recorder
            outcome.cases[phase] += len(recorder.cases)
            outcome.seconds[phase] += event.elapsed_time
            for node in recorder.cases.values():
                outcome.operations.add(node.value.operation.label)
            for interaction in recorder.interactions.values():
                if interaction.response is not None:
                    outcome.statuses[interaction.response.status_code] += 1
            for checks in recorder.checks.values():
                for check in checks:
                    if check.status != Status.FAILURE or check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    key = (str(failure.operation), failure.title)
                    if key in seen:
                        continue
                    seen.add(key)
                    outcome.failures.append(
                        {
                            "phase": phase,
                            "check": check.name,
                            "operation": str(failure.operation),
                            "title": failure.title,
                            "message": failure.message[:500],
                            "curl": check.failure_info.code_sample[:2000],
                        }
                    )
        elif isinstance(event, ev.NonFatalError):
            outcome.errors.append(f"{event.label}: {event.info.message}"[:500])
        elif isinstance(event, ev.FatalError):
            outcome.errors.append(f"fatal: {event.exception!r}"[:500])
    target = output_dir / "fuzz"
    target.mkdir(parents=True, exist_ok=True)
    (target / f"{label}.json").write_text(json.dumps(outcome.report(), indent=2) + "\n")
    return outcome
