"""The Python conformance runner: every case against the real server (one test per case), the
case files' own consistency, and the suite's power to catch broken servers."""
import io
import json

import pytest

import pcieemu

import conformance
from broken_fake import BrokenFakeServer

CASES = conformance.load_cases()
VIRTIO_CASES = conformance.load_cases(conformance.HERE.parent / "virtio-net" / "cases")


# ------------------------------------------------------------------ the cases themselves

@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_passes_against_pcieemu(runner, case):
    result = runner.run_case(case)
    assert result.passed, f"{case.name} [{case.spec}]: {result.reason}"


@pytest.mark.parametrize("case", VIRTIO_CASES, ids=[c.name for c in VIRTIO_CASES])
def test_virtio_case_passes_against_pcieemu(virtio_runner, case):
    """The virtio-net suite against a server started with --machine virtio-net/machine.json."""
    result = virtio_runner.run_case(case)
    assert result.passed, f"{case.name} [{case.spec}]: {result.reason}"


def test_virtio_suite_size_and_names_are_its_own():
    assert len(VIRTIO_CASES) >= 15
    assert all(c.name.startswith("virtio.") and c.spec.startswith("virtio 1.2") for c in VIRTIO_CASES)
    assert not {c.name for c in VIRTIO_CASES} & {c.name for c in CASES}


def test_suite_size_and_metadata():
    assert len(CASES) >= 80
    assert len({c.name for c in CASES}) == len(CASES)
    assert all(c.spec.strip() for c in CASES)


def test_case_files_are_in_house_layout():
    import format_cases
    import sys
    saved = sys.argv
    sys.argv = ["format_cases.py", "--check"]
    try:
        assert format_cases.main() == 0, "run tests/Conformance/python/format_cases.py"
    finally:
        sys.argv = saved


def test_every_rpc_is_covered():
    ops = {s["op"] for c in CASES for s in c.steps}
    rpc_ops = {"reset", "get_platform", "list_functions", "read_config", "write_config", "read_mmio", "write_mmio",
               "read_memory", "write_memory", "transact", "subscribe_interrupts", "inject_frame", "capture_frames",
               "translate_address"}
    assert rpc_ops <= ops, f"not covered: {rpc_ops - ops}"


def test_every_rpc_has_a_malformed_request_case():
    errored = {s["op"] for c in CASES for s in c.steps if "error" in s.get("expect", {})}
    for op in ("read_config", "write_config", "read_mmio", "write_mmio", "read_memory", "write_memory", "transact",
               "subscribe_interrupts", "inject_frame", "capture_frames", "translate_address"):
        assert op in errored, op


# ------------------------------------------------------------------ runner mechanics

def test_evaluate_expressions():
    env = {"bar": 0xE1000000}
    assert conformance.evaluate("0x10", env) == 16
    assert conformance.evaluate("01:10.2", env) == 0x0182
    assert conformance.evaluate("$bar+0x4000+1", env) == 0xE1004001
    assert conformance.evaluate(7, env) == 7
    with pytest.raises(conformance.CaseFileError):
        conformance.evaluate("$missing", env)
    with pytest.raises(conformance.CaseFileError):
        conformance.evaluate("nonsense", env)


def test_filter_selects_by_substring_and_wildcard():
    assert {c.name for c in conformance.select(CASES, "sriov.enable")} == {"sriov.enable-without-ari", "sriov.enable-with-ari"}
    assert all(c.name.startswith("error.") for c in conformance.select(CASES, "error.*"))
    assert conformance.select(CASES, None) == CASES


@pytest.mark.parametrize("doc, message", [
    ({"cases": [{"name": "a", "spec": "s"}]}, "missing 'steps'"),
    ({"cases": [{"name": "a", "spec": "s", "steps": [{"op": "frobnicate"}]}]}, "unknown op"),
    ({"cases": [{"name": "a", "spec": "s", "steps": [{"op": "reset"}]}, {"name": "a", "spec": "s", "steps": [{"op": "reset"}]}]}, "duplicate"),
    ({"nothing": 1}, "'cases' list"),
    ({"cases": [{"name": "a", "spec": "s", "steps": [{"op": "subscribe_interrupts", "while": [{"op": "nope"}]}]}]}, "while"),
])
def test_malformed_case_files_are_rejected(tmp_path, doc, message):
    (tmp_path / "x.json").write_text(json.dumps(doc))
    with pytest.raises(conformance.CaseFileError, match=message):
        conformance.load_cases(tmp_path)


def _one(name, steps):
    return conformance.Case(name, "test", "", steps, "inline")


@pytest.mark.parametrize("steps, reason", [
    ([{"op": "read_config", "rid": "01:00.0", "offset": 0, "width": 4, "expect": {"value": "0x12345678"}}], "value 0x10c98086, expected 0x12345678"),
    ([{"op": "read_config", "rid": "01:00.2", "offset": 0, "width": 4}], "status UNSUPPORTED_REQUEST, expected SUCCESSFUL"),
    ([{"op": "read_config", "rid": "01:00.0", "offset": 0, "width": 4, "expect": {"error": {"code": "INVALID_ARGUMENT"}}}], "expected gRPC error INVALID_ARGUMENT"),
    ([{"op": "read_config", "rid": "01:00.0", "offset": 0, "width": 3, "expect": {"error": {"code": "OUT_OF_RANGE"}}}], "expected OUT_OF_RANGE"),
    ([{"op": "read_config", "rid": "01:00.0", "offset": 0, "width": 3, "expect": {"error": {"code": "INVALID_ARGUMENT", "message_contains": "offset"}}}], "does not name 'offset'"),
    ([{"op": "list_functions", "expect": {"rids": ["00:00.0"]}}], "expected 00:00.0"),
    ([{"op": "transact", "requests": [{"tag": 1, "config_write": {"rid": "01:00.0", "offset": "0x3c", "width": 1, "value": 1}}],
       "expect": {"completions": [{"tag": 1}]}}], "0 completion(s)"),
    ([{"op": "get_platform", "expect": {"fields": {"iommu_base": "0x1"}}}], "iommu_base"),
    ([{"op": "read_memory", "address": 0, "length": 2, "expect": {"data": "0102"}}], "data 0000, expected 0102"),
])
def test_wrong_expectations_fail_with_a_reason(runner, steps, reason):
    result = runner.run_case(_one("negative", steps))
    assert not result.passed
    assert reason in result.reason


@pytest.mark.parametrize("steps, reason", [
    ([{"op": "wait", "ms": 0}], "'ms' must be 1..10000, got 0"),
    ([{"op": "wait"}], "missing 'ms'"),
    ([{"op": "transact", "requests": [{"wait_ms": 20000}]}], "'wait_ms' must be 1..10000, got 20000"),
])
def test_bad_waits_are_bad_case_data(runner, steps, reason):
    result = runner.run_case(_one("bad-wait", steps))
    assert not result.passed
    assert "bad case data" in result.reason and reason in result.reason


_VF_ENABLE = [{"op": "write_config", "rid": "01:00.0", "offset": "0x170", "width": 2, "value": "1"},
              {"op": "write_config", "rid": "01:00.0", "offset": "0x168", "width": 2, "value": "0x0009"}]
_VF_READ = {"op": "read_config", "rid": "02:10.0", "offset": "0x08", "width": 4, "expect": {"value": "0x02000000", "mask": "0xffffff00"}}
_VF_RULE = "SRIOV.VF_ACCESS_BEFORE_100MS"


@pytest.mark.parametrize("steps, flagged", [
    (_VF_ENABLE + [_VF_READ], True),
    (_VF_ENABLE + [{"op": "wait", "ms": 100}, _VF_READ], False),
    ([{"op": "transact", "requests": [
        {"tag": 1, "config_write": {"rid": "01:00.0", "offset": "0x170", "width": 2, "value": "1"}},
        {"tag": 2, "config_write": {"rid": "01:00.0", "offset": "0x168", "width": 2, "value": "0x0009"}},
        {"tag": 3, "config_read": {"rid": "01:00.0", "offset": "0x168", "width": 2}},
        {"wait_ms": 100},
        {"tag": 4, "config_read": {"rid": "02:10.0", "offset": "0x08", "width": 4}}],
       "expect": {"completions": [{"tag": 3, "status": "SUCCESSFUL", "value": "0x0009", "mask": "0x0009"},
                                  {"tag": 4, "status": "SUCCESSFUL", "value": "0x02000000", "mask": "0xffffff00"}]}}], False),
], ids=["no-wait", "wait-step", "wait-in-stream"])
def test_a_wait_is_time_on_the_machine_clock(server, runner, steps, flagged):
    """The checker (machine clock) flags a VF read right after VF Enable, and not after a wait."""
    with pcieemu.Client(server.tcp_target, token_file=server.token_file) as c:
        c.clear_violations()
        result = runner.run_case(_one("wait", steps))
        assert result.passed, result.reason
        rules = {v.rule.id for v in c.get_violations().violations}
        assert (_VF_RULE in rules) == flagged, rules
        if not flagged:
            assert result.seconds >= 0.1


def test_interrupt_expectations_are_checked(runner):
    fire = next(c for c in CASES if c.name == "interrupts.msix-message-delivered").steps[0]
    wrong = json.loads(json.dumps(fire))
    wrong["expect"]["events"][0]["data"] = "0x99"
    result = runner.run_case(_one("negative", [wrong]))
    assert not result.passed and "event 0.data: 0x41, expected 0x99" in result.reason
    silent = json.loads(json.dumps(fire))
    silent["while"] = silent["while"][:-1]  # never writes EICS: no event may be invented
    conformance.RPC_TIMEOUT, saved = 2.0, conformance.RPC_TIMEOUT
    try:
        result = runner.run_case(_one("negative", [silent]))
    finally:
        conformance.RPC_TIMEOUT = saved
    assert not result.passed and "none arrived" in result.reason


def test_frame_expectations_are_checked(runner):
    case = next(c for c in CASES if c.name == "ethernet.capture-sees-frame-from-vf")
    at = next(i for i, s in enumerate(case.steps) if s["op"] == "capture_frames")
    wrong = json.loads(json.dumps(case.steps))
    wrong[at]["expect"]["frames"][0]["data"] = "ffffffffffff"
    result = runner.run_case(_one("negative", wrong))
    assert not result.passed and f"step {at + 1} (capture_frames): frame 0: data " in result.reason
    assert "expected ffffffffffff" in result.reason
    silent = json.loads(json.dumps(case.steps))
    silent[at]["while"] = []  # TDT never written: no frame may be invented
    conformance.RPC_TIMEOUT, saved = 2.0, conformance.RPC_TIMEOUT
    try:
        result = runner.run_case(_one("negative", silent))
    finally:
        conformance.RPC_TIMEOUT = saved
    assert not result.passed and "frame 0: none arrived" in result.reason


def test_report_lines_and_exit_code(server, tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"cases": [
        {"name": "good", "spec": "s", "steps": [{"op": "read_config", "rid": "00:00.0", "offset": 0, "width": 2, "expect": {"value": "0x8086"}}]},
        {"name": "bad", "spec": "spec-x", "steps": [{"op": "read_config", "rid": "00:00.0", "offset": 0, "width": 2, "expect": {"value": "0x1"}}]},
    ]}))
    out = io.StringIO()
    results = conformance.run(server.tcp_target, None, out=out, cases_dir=tmp_path, token_file=server.token_file)
    lines = out.getvalue().splitlines()
    assert lines[0] == "PASS good"
    assert lines[1].startswith("FAIL bad [spec-x]: step 1 (read_config)")
    assert lines[-1] == "conformance: 1 passed, 1 failed"
    assert [r.passed for r in results] == [True, False]
    assert conformance.main(["--target", server.tcp_target, "--token-file", server.token_file, "--cases", str(tmp_path)]) == 1
    assert conformance.main(["--target", server.tcp_target, "--token-file", server.token_file, "--cases", str(tmp_path), "--filter", "good"]) == 0
    assert conformance.main(["--target", server.tcp_target, "--token-file", server.token_file, "--cases", str(tmp_path), "--filter", "nomatch"]) == 1


def test_runner_over_unix_socket(server):
    out = io.StringIO()
    results = conformance.run(server.unix_target, "session.read-sees", out=out)
    assert results and all(r.passed for r in results), out.getvalue()


# ------------------------------------------------------------------ catching a broken server

ORDERING_CASES = ["session.read-sees-posted-config-write", "session.read-sees-many-posted-writes", "session.reads-between-writes",
                  "session.sriov-enable-in-stream", "session.mmio-read-sees-posted-mmio-write", "session.memory-ops-ordered",
                  "session.bar-write-then-mmio-read", "session.batch-executes-in-order", "session.ordering-across-messages-and-batches"]


def test_suite_catches_a_server_that_drops_posted_write_ordering(server):
    fake = BrokenFakeServer(server.tcp_target, token_file=server.token_file)
    try:
        out = io.StringIO()
        results = {r.name: r for r in conformance.run(fake.target, "session.", out=out)}
    finally:
        fake.stop()
    report = out.getvalue()
    for name in ORDERING_CASES:
        assert not results[name].passed, f"{name} passed against the broken fake:\n{report}"
    # The fake is otherwise faithful: cases that do not depend on ordering still pass through it.
    for name in ("session.tags-echoed-in-order", "session.posted-writes-no-completion", "session.acked-writes-complete",
                 "session.invalid-width-ends-stream"):
        assert results[name].passed, f"{name}: {results[name].reason}"
    assert "FAIL session.read-sees-posted-config-write" in report
    assert "value 0xb, expected 0x5a" in results["session.read-sees-posted-config-write"].reason
