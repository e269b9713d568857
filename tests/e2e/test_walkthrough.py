"""The README's quick start, followed literally, from a fresh clone (issue 7, part 5).

What a newcomer does, and nothing the README does not say: ``git clone`` (of this checkout's
committed HEAD, so uncommitted edits are not what is tested), the quick start's ``make run``
in the background on its embedded SQLite default, then, in another shell, the README's
walkthrough blocks one after the other (a partner app and a hospital: token, verification,
e-card, QR code, scan, quote, settlement, enquiry), then Ctrl-C, which must stop all four
services cleanly.

The commands are not copied here: they are read from README.md's "Quick start" section,
from the fenced ``sh`` blocks tagged ``<!-- walkthrough: NAME -->``, and run as they are in
one bash (shell variables carry from block to block, as in the newcomer's terminal; with
``set -euo pipefail``, stricter than a terminal: any failing command stops the walk). Each
``call`` line states the answer it expects in its comment (``# 201 {"status": "active"}``);
the test holds every answer to that, and checks on top that the answers agree with each
other (the e-card, the scan, the quote, the settlement and the account tell one story, to
the fen). So a README edit that breaks a step, or a product change that makes the README
wrong, fails this test.

Two settings differ from a newcomer's terminal, both documented in the README and the
Makefile, and neither changes what runs:

- ``ESSC_VENV``: a fresh clone would create its own virtualenv (~40 s of pip); the test
  hands ``make run`` the virtualenv running the tests instead. That only swaps where the
  interpreter and third-party packages come from: the Makefile puts the clone's own packages
  first on ``PYTHONPATH``, so the clone's code is what runs.
- ``ESSC_PORT_BASE`` (and ``ESSC_GATEWAY`` for the steps): other tests run on this machine
  at the same time, so the four services listen on four free ports instead of 8000-8003.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
STEPS = ("token", "verify", "ecard", "qr", "scan", "quote", "settle", "enquiry")
PARTS = ("gateway", "identity", "issuance", "settlement")
BLOCK = re.compile(r"<!-- walkthrough: (?P<name>[a-z-]+) -->\n```sh\n(?P<code>.*?)\n```", re.S)
EXPECT = re.compile(r"#\s*(?P<status>\d{3})\b\s*(?P<rest>.*)$")
READY_LINE = "Press Ctrl-C to stop."
# The environment of this test process must not steer the newcomer's `make run`.
FOREIGN_ENV = ("ESSC_", "GATEWAY_", "IDENTITY_", "ISSUANCE_", "SETTLEMENT_", "MAKE", "MFLAGS")
FOREIGN_NAMES = ("PYTHONPATH", "VIRTUAL_ENV", "REPLICAS")


# --- the README --------------------------------------------------------------------------


def quick_start_blocks(readme: str) -> dict[str, str]:
    """The tagged ``sh`` blocks of the "Quick start" section, in order, by name."""
    start = readme.index("\n## Quick start\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end != -1 else len(readme)]
    blocks: dict[str, str] = {}
    for match in BLOCK.finditer(section):
        assert match["name"] not in blocks, f"two walkthrough blocks named {match['name']}"
        blocks[match["name"]] = match["code"]
    return blocks


@dataclass(frozen=True)
class Expected:
    line: str
    status: int
    subset: Any  # a JSON object the answer must contain, or None


def expectations(code: str) -> list[Expected]:
    """One per ``call`` line: the status and the JSON its comment promises."""
    out = []
    for line in code.splitlines():
        if not re.match(r"\s*call\s", line):
            continue
        found = EXPECT.search(line)
        assert found, f"the README's call line states no expected status: {line!r}"
        rest = found["rest"]
        subset = json.JSONDecoder().raw_decode(rest)[0] if rest.startswith("{") else None
        out.append(Expected(line.strip(), int(found["status"]), subset))
    return out


def contains(actual: Any, expected: Any) -> bool:
    """``expected`` is a part of ``actual`` (objects: these keys with these values)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and contains(actual[k], v) for k, v in expected.items()
        )
    return bool(actual == expected)


# --- what the steps printed --------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: printed by the step itself, not by `call`
    body: Any


def json_documents(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    docs: list[Any] = []
    i = 0
    while i < len(text):
        if text[i] in "{[":
            doc, i = decoder.raw_decode(text, i)
            docs.append(doc)
        else:
            i += 1
    return docs


def answers(output: str) -> list[Answer]:
    """Split a step's output at ``call``'s ``HTTP <status>`` lines."""
    parts = re.split(r"^HTTP (\d{3})$", output, flags=re.M)
    out = [Answer(None, doc) for doc in json_documents(parts[0])]
    for status, text in zip(parts[1::2], parts[2::2], strict=True):
        docs = json_documents(text)
        assert len(docs) <= 1, f"HTTP {status} printed {len(docs)} JSON documents"
        out.append(Answer(int(status), docs[0] if docs else None))
    return out


def steps_output(stdout: str) -> dict[str, str]:
    found = re.split(r"^@@walkthrough-step ([a-z-]+)$", stdout, flags=re.M)
    return dict(zip(found[1::2], found[2::2], strict=True))


def fen(amount: str) -> int:
    value = Decimal(amount) * 100
    assert value == value.to_integral_value(), amount
    return int(value)


# --- processes and ports -----------------------------------------------------------------


def free_port_base() -> int:
    """Four consecutive ports free now, below the ephemeral range other tests draw from."""
    for _ in range(200):
        base = random.randrange(20000, 30000, 4)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + len(PARTS)):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no four consecutive free ports")


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_in(directory: Path) -> list[int]:
    """Pids of processes working in ``directory`` (the clone): the ones this test started."""
    pids: list[int] = []
    if not Path("/proc").is_dir():  # not Linux: the ports are the only witness
        return pids
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cwd = Path(os.readlink(entry / "cwd"))
            if cwd == directory or directory in cwd.parents:
                pids.append(int(entry.name))
    return pids


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(FOREIGN_ENV) and k not in FOREIGN_NAMES
    }
    env.update(extra)
    return env


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, text=True, capture_output=True
    ).stdout.strip()


def fresh_clone(dest: Path) -> Path:
    """``git clone`` of this checkout, at its committed HEAD."""
    head = git("rev-parse", "HEAD")
    git("clone", "--quiet", "--no-checkout", str(REPO), str(dest), cwd=dest.parent)
    try:
        git("cat-file", "-e", head + "^{commit}", cwd=dest)
    except subprocess.CalledProcessError:  # HEAD on no branch: not cloned, fetch it
        git("fetch", "--quiet", str(REPO), "HEAD", cwd=dest)
    git("checkout", "--quiet", "--detach", head, cwd=dest)
    return dest


# --- the test ----------------------------------------------------------------------------


def test_the_quick_start_is_tagged_and_every_call_states_its_answer() -> None:
    """This checkout's README (no processes): the blocks are there, every call says its answer."""
    blocks = quick_start_blocks((REPO / "README.md").read_text())
    assert tuple(blocks) == ("run", *STEPS)
    promised = {name: expectations(blocks[name]) for name in STEPS}
    assert all(promised[name] for name in STEPS if name != "token"), promised
    assert "${ESSC_GATEWAY:-http://127.0.0.1:8000}" in blocks["token"], "the default is literal"


def test_the_readers_catch_what_they_must() -> None:
    """The parsing this test relies on fails where it should (no processes)."""
    with pytest.raises(AssertionError, match="states no expected status"):
        expectations('call GET /v1/x "$APP"   # the answer')
    (one,) = expectations('call GET /v1/x "$APP"   # 200 {"opened": true}: the balance')
    assert (one.status, one.subset) == (200, {"opened": True})
    assert contains({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 2}})
    assert not contains({"a": 1, "b": {"c": 2}}, {"b": {"c": 3}})
    assert not contains({"a": 1}, {"b": None})
    said = answers('{"t": 1}\nHTTP 201\n{\n  "x": [1]\n}\nHTTP 204\nHTTP 422\n{"status": 422}\n')
    assert said == [
        Answer(None, {"t": 1}),
        Answer(201, {"x": [1]}),
        Answer(204, None),
        Answer(422, {"status": 422}),
    ]
    readme = "intro\n## Quick start\n<!-- walkthrough: run -->\n```sh\nmake run\n```\n## Next\n"
    assert quick_start_blocks(readme) == {"run": "make run"}
    assert quick_start_blocks(readme.replace("walkthrough: run", "run")) == {}


@pytest.fixture
def prerequisites() -> None:
    missing = [tool for tool in ("git", "make", "bash", "curl", "jq") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"the quick start needs {', '.join(missing)}, not installed here")
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    if sys.prefix == sys.base_prefix:
        pytest.skip("tests not running in a virtualenv: nothing for ESSC_VENV to reuse")


@pytest.mark.usefixtures("prerequisites")
def test_the_readme_quick_start_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "e-ssc")
    blocks = quick_start_blocks((clone / "README.md").read_text())
    assert tuple(blocks) == ("run", *STEPS), "the quick start's walkthrough blocks changed"
    commands = [line.split("#", 1)[0].strip() for line in blocks["run"].splitlines()]
    assert [c for c in commands if c] == ["make run"], "the quick start starts with `make run`"

    base = free_port_base()
    gateway = f"http://127.0.0.1:{base}"
    log_path = tmp_path / "make-run.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        make = subprocess.Popen(
            ["bash", "-c", blocks["run"]],
            cwd=clone,
            env=clean_env(ESSC_VENV=sys.prefix, ESSC_PORT_BASE=str(base)),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the terminal's Ctrl-C reaches all
        )
    try:
        while READY_LINE not in log_path.read_text(errors="replace"):
            assert make.poll() is None, f"make run exited:\n{log_path.read_text()}"
            assert time.monotonic() - started < 180, f"not running:\n{log_path.read_text()}"
            time.sleep(0.2)
        run_log = log_path.read_text()
        ready_after = time.monotonic() - started
        assert f"Public API (gateway) : {gateway}" in run_log, run_log
        assert "3 demo e-cards" in run_log, run_log
        assert "not opened" not in run_log, run_log

        outputs = walk(clone, blocks, gateway, log_path)
        check_answers(clone, blocks, outputs)
        walked_after = time.monotonic() - started

        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in make run's terminal
        code = make.wait(timeout=60)
        stopped_after = time.monotonic() - started
        left = processes_in(clone)
        still_open = [port for port in range(base, base + len(PARTS)) if listening(port)]
    finally:
        stop_everything(make, clone)

    run_log = log_path.read_text()
    assert code in (0, 130, -signal.SIGINT), f"make run ended with {code}:\n{run_log}"
    stopped = re.search(r"^e-SSC: stopped \((.*)\)$", run_log, re.M)
    assert stopped, f"no stop report:\n{run_log}"
    exits = {part: status for part, _, status in (p.partition("=") for p in stopped[1].split(", "))}
    assert exits == dict.fromkeys(PARTS, "0"), run_log
    assert "exited unexpectedly" not in run_log, run_log
    assert "Traceback" not in run_log, run_log
    assert not left, f"processes of make run outlived Ctrl-C: {left}"
    assert not still_open, f"ports still listening after Ctrl-C: {still_open}"
    for part in PARTS:
        part_log = (clone / "var" / "logs" / f"{part}.log").read_text(errors="replace")
        assert "Traceback" not in part_log, f"{part}:\n{part_log[-3000:]}"
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # make run and all it waited for
    print(
        f"\nwalkthrough: running after {ready_after:.1f} s, steps done after "
        f"{walked_after:.1f} s, stopped after {stopped_after:.1f} s; CPU of the processes "
        f"started: {usage.ru_utime + usage.ru_stime:.1f} s"
    )


def walk(clone: Path, blocks: dict[str, str], gateway: str, log_path: Path) -> dict[str, str]:
    """Run the README's steps in one bash, in order, as pasted into a terminal."""
    script = ["set -euo pipefail"]
    for name in STEPS:
        script += [f"printf '\\n@@walkthrough-step {name}\\n'", blocks[name]]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=clone,
        env=clean_env(ESSC_GATEWAY=gateway),
        text=True,
        capture_output=True,
        timeout=120,
    )
    outputs = steps_output(done.stdout)
    if done.returncode != 0:
        failed = list(outputs)[-1] if outputs else "token"
        pytest.fail(
            f"the README's step {failed!r} failed ({done.returncode}):\n"
            f"{outputs.get(failed, '')}\nstderr:\n{done.stderr}\n"
            f"make run:\n{log_path.read_text()[-3000:]}"
        )
    assert list(outputs) == list(STEPS)
    return outputs


def check_answers(clone: Path, blocks: dict[str, str], outputs: dict[str, str]) -> None:
    """Each answer is what the README's comment says, and the answers agree with each other."""
    got: dict[str, list[Answer]] = {}
    for name in STEPS:
        said = [a for a in answers(outputs[name]) if a.status is not None]
        promised = expectations(blocks[name])
        assert len(said) == len(promised), f"{name}: {len(said)} calls answered:\n{outputs[name]}"
        for answer, expected in zip(said, promised, strict=True):
            assert answer.status == expected.status, f"{expected.line}\n{answer}"
            if expected.subset is not None:
                assert contains(answer.body, expected.subset), f"{expected.line}\n{answer.body}"
        got[name] = answers(outputs[name])

    (token,) = got["token"]
    assert token.body["token_type"] == "Bearer"
    assert 0 < token.body["expires_in"] <= 600
    assert "ecard:issue" in token.body["scope"].split()

    started, outbox, confirmed = got["verify"]
    assert started.body["verification_id"]
    assert started.body["expires_at"]
    newest = max(outbox.body["items"], key=lambda i: i["sent_at"])
    assert re.fullmatch(r"\d{6}", newest["code"])
    assert newest["code"] in newest["text"]
    assert "*" in newest["phone"], "the outbox shows the phone masked"
    assert confirmed.body["identity_assertion"].count(".") == 2

    issued, pin, payment, before = got["ecard"]
    ecard = issued.body
    assert pin.body is None
    assert payment.body["ecard_id"] == ecard["ecard_id"]
    assert payment.body["sign_level"] == 2
    assert "*" in ecard["holder"]["id_number_masked"]

    (qr,) = got["qr"]
    assert len(qr.body["qr_token"]) > 100

    (scan,) = got["scan"]
    assert len(scan.body["settlement_token"]) == 40
    assert scan.body["holder"]["name_masked"] == ecard["holder"]["name_masked"]
    assert scan.body["holder"]["insured_region"] == ecard["region_code"]

    (quote,) = got["quote"]
    q = quote.body
    totals = {k: fen(v) for k, v in q["totals"].items() if k != "fund_ratio"}
    assert totals["fund_pay"] + totals["account_pay"] + totals["cash_pay"] == totals["total"]
    assert sum(fen(line["amount"]) for line in q["lines"]) == totals["total"] > 0
    assert all(line["reason"] for line in q["lines"])
    assert q["rules"]
    hospitals = [
        c
        for c in json.loads((clone / "var" / "demo-clients.json").read_text())
        if c["kind"] == "hospital"
    ]
    assert q["treatment_region"] == hospitals[0]["region_code"]
    assert q["insured_region"] == ecard["region_code"]

    first, replay = got["settle"]
    assert first.body == replay.body, "the same Idempotency-Key answers the same settlement"
    assert first.body["quote_id"] == q["quote_id"]
    assert first.body["totals"] == q["totals"]

    after, history = got["enquiry"]
    b, a = before.body, after.body
    assert fen(a["balance"]) == fen(b["balance"]) - totals["account_pay"]
    assert fen(a["fund_paid"]) == fen(b["fund_paid"]) + totals["fund_pay"]
    assert fen(a["deductible_used"]) == fen(b["deductible_used"]) + totals["deductible"]
    assert fen(a["cap_remaining"]) == fen(b["cap_remaining"]) - totals["fund_pay"]
    (item,) = [
        i for i in history.body["items"] if i["settlement_id"] == first.body["settlement_id"]
    ]
    assert item["status"] == "settled"
    assert {k: fen(item[k]) for k in ("total", "fund_pay", "account_pay", "cash_pay")} == {
        k: totals[k] for k in ("total", "fund_pay", "account_pay", "cash_pay")
    }


def stop_everything(make: subprocess.Popen[bytes], clone: Path) -> None:
    """After a failure: Ctrl-C, then kill what is left, by pid (only this test's processes)."""
    if make.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make.pid, signal.SIGINT)
        try:
            make.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(make.pid, signal.SIGKILL)
            make.wait(timeout=10)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = processes_in(clone)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if left:
            time.sleep(2)
