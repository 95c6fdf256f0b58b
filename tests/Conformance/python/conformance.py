#!/usr/bin/python3
"""PcieEmu conformance runner (Python): runs the language-neutral cases in ../cases/*.json
against a server and prints one line per case (PASS/FAIL with the reason).

    /usr/bin/python3 tests/Conformance/python/conformance.py --target tcp://127.0.0.1:50551 [--filter NAME]

Exit status: 0 when every selected case passed, 1 when any failed, 2 on a usage error.
The case format is described in tests/Conformance/README.md.
"""
from __future__ import annotations

import argparse
import base64
import json
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE.parent / "cases"
_CLIENT_SRC = HERE.parents[2] / "clients" / "python" / "src"
if _CLIENT_SRC.is_dir() and str(_CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(_CLIENT_SRC))

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

import pcieemu  # noqa: E402
from pcieemu import pb  # noqa: E402

RPC_TIMEOUT = 10.0
STREAM_GRACE = 0.3
_BDF = re.compile(r"^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


class CaseFailure(Exception):
    """A step did not match its expectation."""


class CaseFileError(ValueError):
    """A case file is malformed."""


# ---------------------------------------------------------------- loading ----------------

@dataclass
class Case:
    name: str
    spec: str
    description: str
    steps: List[Dict[str, Any]]
    file: str


@dataclass
class Result:
    name: str
    passed: bool
    reason: str = ""
    seconds: float = 0.0


KNOWN_OPS = {"reset", "get_platform", "list_functions", "read_config", "write_config", "read_mmio",
             "write_mmio", "read_memory", "write_memory", "transact", "subscribe_interrupts",
             "inject_frame", "capture_frames", "translate_address", "wait"}
MAX_WAIT_MS = 10_000  # the longest pause a case may ask for (a typo fails instead of hanging)


def _sleep_ms(ms: int) -> None:
    """Sleeps at least ms milliseconds by the monotonic clock (a driver's 100 ms, never 99.9)."""
    end = time.monotonic() + ms / 1000
    while (left := end - time.monotonic()) > 0:
        time.sleep(left)


def load_cases(directory: Path = CASES_DIR) -> List[Case]:
    """Loads and checks every case file; raises CaseFileError naming the file and case."""
    cases: List[Case] = []
    names = set()
    files = sorted(Path(directory).glob("*.json"))
    if not files:
        raise CaseFileError(f"no case files in {directory}")
    for path in files:
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise CaseFileError(f"{path.name}: not JSON: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
            raise CaseFileError(f"{path.name}: top level must be an object with a 'cases' list")
        for i, c in enumerate(doc["cases"]):
            where = f"{path.name}: cases[{i}]"
            for key in ("name", "spec", "steps"):
                if key not in c:
                    raise CaseFileError(f"{where}: missing '{key}'")
            if c["name"] in names:
                raise CaseFileError(f"{where}: duplicate case name '{c['name']}'")
            names.add(c["name"])
            if not isinstance(c["steps"], list) or not c["steps"]:
                raise CaseFileError(f"{where} ({c['name']}): 'steps' must be a non-empty list")
            for j, s in enumerate(c["steps"]):
                for k, inner in enumerate([s] + list(s.get("while", []))):
                    if not isinstance(inner, dict) or inner.get("op") not in KNOWN_OPS:
                        at = f"steps[{j}]" + (f".while[{k - 1}]" if k else "")
                        raise CaseFileError(f"{where} ({c['name']}): {at}: unknown op {inner.get('op') if isinstance(inner, dict) else inner!r}")
            cases.append(Case(c["name"], c["spec"], c.get("description", ""), c["steps"], path.name))
    return cases


def select(cases: List[Case], name_filter: Optional[str]) -> List[Case]:
    """Cases whose name contains the filter (case-insensitive); '*' wildcards allowed."""
    if not name_filter:
        return cases
    if "*" in name_filter:
        rx = re.compile("^" + ".*".join(re.escape(p) for p in name_filter.split("*")) + "$", re.I)
        return [c for c in cases if rx.match(c.name)]
    return [c for c in cases if name_filter.lower() in c.name.lower()]


# ---------------------------------------------------------------- values -----------------

def evaluate(value: Any, env: Dict[str, int]) -> int:
    """An integer from a case value: a number, "0x..", a decimal string, "BB:DD.F", "$var", or a
    sum of those with '+' (e.g. "$bar0+0x8")."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise CaseFileError(f"expected a number, got {value!r}")
    total = 0
    for term in value.replace(" ", "").split("+"):
        if term.startswith("$"):
            if term[1:] not in env:
                raise CaseFileError(f"variable {term} is not set by an earlier step")
            total += env[term[1:]]
        elif _BDF.match(term):
            total += int(pcieemu.parse_bdf(term))
        else:
            try:
                total += int(term, 0)
            except ValueError:
                raise CaseFileError(f"cannot read {term!r} as a number") from None
    return total


def status_value(name: str) -> int:
    full = name if name.startswith("COMPLETION_STATUS_") else "COMPLETION_STATUS_" + name
    return pb.common_pb2.CompletionStatus.Value(full)


def _hex(v: int) -> str:
    return f"{v:#x}"


def check_value(what: str, actual: int, expect: Dict[str, Any], env: Dict[str, int]) -> None:
    if "value" in expect:
        mask = evaluate(expect.get("mask", (1 << 64) - 1), env)
        want = evaluate(expect["value"], env)
        if actual & mask != want & mask:
            m = f" (mask {_hex(mask)})" if "mask" in expect else ""
            raise CaseFailure(f"{what}: value {_hex(actual & mask)}, expected {_hex(want & mask)}{m}; raw {_hex(actual)}")


def check_status(what: str, actual: int, expect: Dict[str, Any]) -> None:
    want = expect.get("status", "SUCCESSFUL")
    if actual != status_value(want):
        raise CaseFailure(f"{what}: status {pb.status_name(actual)}, expected {want}")


def check_error(what: str, err: Optional[grpc.RpcError], expect: Dict[str, Any]) -> bool:
    """Checks an expected gRPC error; returns True when the step expected one."""
    want = expect.get("error")
    if want is None:
        if err is not None:
            raise CaseFailure(f"{what}: unexpected gRPC error {err.code().name}: {err.details()}")
        return False
    if err is None:
        raise CaseFailure(f"{what}: expected gRPC error {want['code']}, the call succeeded")
    if err.code().name != want["code"]:
        raise CaseFailure(f"{what}: gRPC error {err.code().name} ({err.details()}), expected {want['code']}")
    needle = want.get("message_contains")
    if needle and needle.lower() not in (err.details() or "").lower():
        raise CaseFailure(f"{what}: error message {err.details()!r} does not name {needle!r}")
    return True


def get_path(msg: Any, path: str) -> Any:
    """'root_ports.0.rid' on a protobuf message (repeated fields indexed by number)."""
    cur = msg
    for part in path.split("."):
        if part.isdigit():
            idx = int(part)
            if idx >= len(cur):
                raise CaseFailure(f"{path}: index {idx} out of range (length {len(cur)})")
            cur = cur[idx]
        else:
            if not hasattr(cur, "DESCRIPTOR") or part not in cur.DESCRIPTOR.fields_by_name:
                raise CaseFailure(f"{path}: no field '{part}'")
            fd = cur.DESCRIPTOR.fields_by_name[part]
            cur = getattr(cur, part)
            if fd.enum_type is not None and fd.label != fd.LABEL_REPEATED:
                cur = fd.enum_type.values_by_number[cur].name if cur in fd.enum_type.values_by_number else str(cur)
    return cur


def compare_field(path: str, actual: Any, want: Any, env: Dict[str, int]) -> None:
    if isinstance(want, bool) or isinstance(actual, bool):
        if bool(actual) != bool(want):
            raise CaseFailure(f"{path}: {actual}, expected {want}")
    elif isinstance(actual, int):
        if actual != evaluate(want, env):
            raise CaseFailure(f"{path}: {_hex(actual)}, expected {_hex(evaluate(want, env))}")
    elif isinstance(actual, str):
        if actual != want:
            raise CaseFailure(f"{path}: {actual!r}, expected {want!r}")
    else:
        raise CaseFailure(f"{path}: cannot compare a {type(actual).__name__}")


def data_of(spec: Any, env: Dict[str, int]) -> bytes:
    """Bytes from "hex" text or {"fill": byte, "length": n}."""
    if isinstance(spec, dict):
        return bytes([evaluate(spec.get("fill", 0), env) & 0xFF]) * evaluate(spec["length"], env)
    return bytes.fromhex(spec.replace(" ", ""))


# ---------------------------------------------------------------- steps ------------------

class Runner:
    """Runs cases against one target."""

    def __init__(self, target: str, token_file: Optional[str] = None):
        # On TCP the token comes from token_file, else $PCIEEMU_TOKEN, else the default token file.
        self.client = pcieemu.Client(target, timeout=RPC_TIMEOUT, token_file=token_file)
        self.target = target
        self.env: Dict[str, int] = {}

    def close(self) -> None:
        self.client.close()

    def run_case(self, case: Case) -> Result:
        t0 = time.monotonic()
        self.env = {}
        try:
            self._reset()
            for i, step in enumerate(case.steps):
                try:
                    getattr(self, "_op_" + step["op"])(step)
                except CaseFailure as e:
                    raise CaseFailure(f"step {i + 1} ({step['op']}): {e}") from None
                except CaseFileError as e:
                    raise CaseFailure(f"step {i + 1} ({step['op']}): bad case data: {e}") from None
            return Result(case.name, True, "", time.monotonic() - t0)
        except CaseFailure as e:
            return Result(case.name, False, str(e), time.monotonic() - t0)
        except grpc.RpcError as e:
            return Result(case.name, False, f"gRPC error {e.code().name}: {e.details()}", time.monotonic() - t0)
        except Exception as e:  # a runner bug or a transport failure must still be a FAIL line
            return Result(case.name, False, f"{type(e).__name__}: {e}", time.monotonic() - t0)

    def _reset(self) -> None:
        self.client.platform_stub.ResetPlatform(pb.platform_pb2.ResetPlatformRequest(), timeout=RPC_TIMEOUT)

    def _unary(self, fn, req, step):
        expect = step.get("expect", {})
        try:
            resp, err = fn(req, timeout=RPC_TIMEOUT), None
        except grpc.RpcError as e:
            resp, err = None, e
        if check_error(step["op"], err, expect):
            return None
        return resp

    def _save(self, step, value: int) -> None:
        if "save" in step:
            mask = evaluate(step.get("save_mask", (1 << 64) - 1), self.env)
            self.env[step["save"]] = value & mask

    def _e(self, step, key, default=None) -> int:
        if key not in step:
            if default is None:
                raise CaseFileError(f"missing '{key}'")
            return default
        return evaluate(step[key], self.env)

    # -- PlatformService
    def _op_reset(self, step):
        resp = self._unary(self.client.platform_stub.ResetPlatform, pb.platform_pb2.ResetPlatformRequest(), step)
        if resp is not None and "functions" in step.get("expect", {}):
            compare_field("functions", resp.functions, step["expect"]["functions"], self.env)

    def _op_get_platform(self, step):
        self._check_fields(self._unary(self.client.platform_stub.GetPlatform, pb.platform_pb2.GetPlatformRequest(), step), step)

    def _op_list_functions(self, step):
        resp = self._unary(self.client.platform_stub.ListFunctions, pb.platform_pb2.ListFunctionsRequest(), step)
        if resp is None:
            return
        expect = step.get("expect", {})
        by_rid = {f.rid: f for f in resp.functions}
        if "rids" in expect:
            want = [evaluate(r, self.env) for r in expect["rids"]]
            got = [f.rid for f in resp.functions]
            if got != want:
                raise CaseFailure("functions " + ", ".join(pcieemu.format_bdf(r) for r in got) +
                                  "; expected " + ", ".join(pcieemu.format_bdf(r) for r in want))
        for rid_text, fields in expect.get("functions", {}).items():
            rid = evaluate(rid_text, self.env)
            f = by_rid.get(rid)
            if f is None:
                raise CaseFailure(f"function {pcieemu.format_bdf(rid)} is not listed")
            for key, want in fields.items():
                if key == "bars":
                    bars = {b.index: b for b in f.bars}
                    for idx, bar_fields in want.items():
                        b = bars.get(int(idx))
                        if b is None:
                            raise CaseFailure(f"{pcieemu.format_bdf(rid)}: BAR {idx} not listed")
                        for bk, bv in bar_fields.items():
                            compare_field(f"{pcieemu.format_bdf(rid)} bars[{idx}].{bk}", getattr(b, bk), bv, self.env)
                elif key == "bar_count":
                    compare_field(f"{pcieemu.format_bdf(rid)} bar count", len(f.bars), want, self.env)
                else:
                    compare_field(f"{pcieemu.format_bdf(rid)}.{key}", getattr(f, key), want, self.env)
        for rid_text in expect.get("absent", []):
            rid = evaluate(rid_text, self.env)
            if rid in by_rid:
                raise CaseFailure(f"function {pcieemu.format_bdf(rid)} is listed but should not be")

    # -- ConfigService
    def _op_read_config(self, step):
        req = pb.config_pb2.ReadConfigRequest(rid=self._e(step, "rid"), offset=self._e(step, "offset"), width=self._e(step, "width"))
        resp = self._unary(self.client.config_stub.ReadConfig, req, step)
        if resp is None:
            return
        what = f"config read {pcieemu.format_bdf(req.rid & 0xFFFF)} +{req.offset:#x}/{req.width}"
        check_status(what, resp.status, step.get("expect", {}))
        check_value(what, resp.value, step.get("expect", {}), self.env)
        self._save(step, resp.value)

    def _op_write_config(self, step):
        req = pb.config_pb2.WriteConfigRequest(rid=self._e(step, "rid"), offset=self._e(step, "offset"),
                                               width=self._e(step, "width"), value=self._e(step, "value"))
        resp = self._unary(self.client.config_stub.WriteConfig, req, step)
        if resp is not None:
            check_status(f"config write {pcieemu.format_bdf(req.rid & 0xFFFF)} +{req.offset:#x}/{req.width}", resp.status, step.get("expect", {}))

    # -- MmioService
    def _op_read_mmio(self, step):
        req = pb.mmio_pb2.ReadMmioRequest(address=self._e(step, "address"), width=self._e(step, "width"))
        resp = self._unary(self.client.mmio_stub.ReadMmio, req, step)
        if resp is None:
            return
        what = f"mmio read {req.address:#x}/{req.width}"
        check_status(what, resp.status, step.get("expect", {}))
        check_value(what, resp.value, step.get("expect", {}), self.env)
        self._save(step, resp.value)

    def _op_write_mmio(self, step):
        req = pb.mmio_pb2.WriteMmioRequest(address=self._e(step, "address"), width=self._e(step, "width"), value=self._e(step, "value"))
        resp = self._unary(self.client.mmio_stub.WriteMmio, req, step)
        if resp is not None:
            check_status(f"mmio write {req.address:#x}/{req.width}", resp.status, step.get("expect", {}))

    # -- MemoryService
    def _op_read_memory(self, step):
        req = pb.memory_pb2.ReadMemoryRequest(address=self._e(step, "address"), length=self._e(step, "length"))
        resp = self._unary(self.client.memory_stub.ReadMemory, req, step)
        if resp is None:
            return
        expect = step.get("expect", {})
        if len(resp.data) != req.length:
            raise CaseFailure(f"read {len(resp.data)} bytes, expected {req.length}")
        if "data" in expect and resp.data != data_of(expect["data"], self.env):
            raise CaseFailure(f"data {resp.data[:64].hex()}, expected {data_of(expect['data'], self.env)[:64].hex()}")

    def _op_write_memory(self, step):
        data = data_of(step["data"], self.env)
        resp = self._unary(self.client.memory_stub.WriteMemory, pb.memory_pb2.WriteMemoryRequest(address=self._e(step, "address"), data=data), step)
        if resp is not None and "length" in step.get("expect", {}):
            compare_field("length", resp.length, step["expect"]["length"], self.env)

    # -- SessionService
    def _request(self, item: Dict[str, Any]) -> "pb.session_pb2.TransactRequest":
        item = dict(item)
        fill = item.pop("batch_fill", None)
        msg = json_format.ParseDict(self._resolve(item), pb.session_pb2.TransactRequest())
        if fill:
            template = json_format.ParseDict(self._resolve(fill["template"]), pb.session_pb2.Transaction())
            first = evaluate(fill.get("first_tag", 1), self.env)
            for k in range(evaluate(fill["count"], self.env)):
                t = msg.batch.add()
                t.CopyFrom(template)
                t.tag = first + k
        return msg

    def _resolve(self, node: Any) -> Any:
        """Numbers for every scalar leaf written as "0x..", "$var" or "BB:DD.F" (proto JSON otherwise)."""
        if isinstance(node, dict):
            return {k: (base64.b64encode(data_of(node[k], self.env)).decode() if k == "data" else self._resolve(node[k]))
                    for k in node}
        if isinstance(node, list):
            return [self._resolve(v) for v in node]
        if isinstance(node, str):
            return str(evaluate(node, self.env))  # proto JSON takes 64-bit integers as strings
        return node

    def _wait_ms(self, item: Dict[str, Any], key: str) -> int:
        if key not in item:
            raise CaseFileError(f"missing '{key}'")
        ms = evaluate(item[key], self.env)
        if not 1 <= ms <= MAX_WAIT_MS:
            raise CaseFileError(f"'{key}' must be 1..{MAX_WAIT_MS}, got {ms}")
        return ms

    def _op_wait(self, step):
        """Lets time pass on the machine's clock, as a driver waits (100 ms after VF Enable or an
        FLR): the server's clock is the wall clock, so a sleep here is that wait."""
        _sleep_ms(self._wait_ms(step, "ms"))

    def _op_transact(self, step):
        # An entry {"wait_ms": N} is no request: the stream pauses there. Like a driver whose
        # non-posted request has completed before it starts to wait, the runner first waits for
        # the completions of every read sent before it, then N ms.
        items = [("wait", self._wait_ms(r, "wait_ms")) if "wait_ms" in r
                 else ("send", self._request(r), any(k.endswith("_read") for k in r))
                 for r in step["requests"]]
        got: List[Any] = []
        arrived = threading.Condition()

        def requests():
            reads = 0
            for item in items:
                if item[0] == "wait":
                    with arrived:
                        arrived.wait_for(lambda: len(got) >= reads, timeout=RPC_TIMEOUT)
                    _sleep_ms(item[1])
                else:
                    reads += item[2]
                    yield item[1]

        call = self.client.session_stub.Transact(requests(), timeout=RPC_TIMEOUT)
        err = None
        try:
            for resp in call:
                with arrived:
                    got.append(resp)
                    got.extend(resp.more)
                    arrived.notify_all()
        except grpc.RpcError as e:
            err = e
        expect = step.get("expect", {})
        want_list = expect.get("completions")
        if want_list is not None:
            tags = [c.tag for c in got]
            if len(got) != len(want_list):
                raise CaseFailure(f"{len(got)} completion(s) with tags {tags}, expected {len(want_list)}"
                                  + (f" (stream error {err.code().name}: {err.details()})" if err else ""))
            for k, (c, w) in enumerate(zip(got, want_list)):
                what = f"completion {k} (tag {c.tag})"
                if "tag" in w and c.tag != evaluate(w["tag"], self.env):
                    raise CaseFailure(f"{what}: tag {c.tag}, expected {evaluate(w['tag'], self.env)} (completions out of order or tags not echoed: {tags})")
                if "status" in w:
                    check_status(what, c.status, w)
                check_value(what, c.value, w, self.env)
                if "kind" in w:
                    want_kind = pb.session_pb2.TransactionKind.Value("TRANSACTION_KIND_" + w["kind"])
                    if c.kind != want_kind:
                        raise CaseFailure(f"{what}: kind {pb.session_pb2.TransactionKind.Name(c.kind)}, expected TRANSACTION_KIND_{w['kind']}")
                if "data" in w and c.data != data_of(w["data"], self.env):
                    raise CaseFailure(f"{what}: data {c.data[:64].hex()}, expected {data_of(w['data'], self.env)[:64].hex()}")
                if "save" in w:
                    self.env[w["save"]] = c.value
        if "count" in expect and len(got) != evaluate(expect["count"], self.env):
            raise CaseFailure(f"{len(got)} completion(s), expected {evaluate(expect['count'], self.env)}"
                              + (f" (stream error {err.code().name}: {err.details()})" if err else ""))
        if "first_tag" in expect:
            first = evaluate(expect["first_tag"], self.env)
            for k, c in enumerate(got):
                if c.tag != first + k:
                    raise CaseFailure(f"completion {k}: tag {c.tag}, expected {first + k} (completions out of order)")
        if "all" in expect:
            for k, c in enumerate(got):
                what = f"completion {k} (tag {c.tag})"
                if "status" in expect["all"]:
                    check_status(what, c.status, expect["all"])
                check_value(what, c.value, expect["all"], self.env)
        check_error("stream", err, expect)

    # -- InterruptService
    def _op_subscribe_interrupts(self, step):
        req = pb.interrupt_pb2.SubscribeInterruptsRequest(rids=[evaluate(r, self.env) for r in step.get("rids", [])])
        expect = step.get("expect", {})
        if "events" in expect or "while" in step:
            return self._subscribe_and_collect(req, step)
        err, live = self._open_stream(self.client.interrupt_stub.SubscribeInterrupts(req, timeout=RPC_TIMEOUT), "error" in expect)
        if not check_error("subscribe", err, expect) and not live:
            raise CaseFailure("the subscription ended at once")

    def _subscribe_and_collect(self, req, step):
        """Subscribes, runs the nested 'while' steps, then expects the listed events in order."""
        call = self.client.interrupt_stub.SubscribeInterrupts(req, timeout=RPC_TIMEOUT + 30)
        self._collect(call, step, step.get("expect", {}).get("events", []), "event", self._check_event)

    def _check_event(self, what, ev, want):
        for key, w in want.items():
            actual = getattr(ev, key)
            if key == "kind":
                name = pb.interrupt_pb2.InterruptKind.Name(actual).replace("INTERRUPT_KIND_", "")
                if name != w:
                    raise CaseFailure(f"{what}: kind {name}, expected {w}")
            else:
                compare_field(f"{what}.{key}", actual, w, self.env)

    def _check_frame(self, what, fr, want):
        for key, w in want.items():
            if key == "data":
                if fr.data != data_of(w, self.env):
                    raise CaseFailure(f"{what}: data {fr.data[:64].hex()}, expected {data_of(w, self.env)[:64].hex()}")
            else:
                compare_field(f"{what}.{key}", getattr(fr, key), w, self.env)

    def _collect(self, call, step, wants, noun, check):
        """With a live server stream: runs the nested 'while' steps, then expects the first messages
        to match ``wants`` in order (each checked by ``check(what, message, want)``)."""
        messages: "queue.Queue" = queue.Queue()

        def pump():
            try:
                for m in call:
                    messages.put(m)
            except grpc.RpcError as e:
                messages.put(e)
        try:
            call.initial_metadata()  # live from here on
            threading.Thread(target=pump, daemon=True).start()
            for j, inner in enumerate(step.get("while", [])):
                try:
                    getattr(self, "_op_" + inner["op"])(inner)
                except CaseFailure as e:
                    raise CaseFailure(f"while[{j + 1}] ({inner['op']}): {e}") from None
            for k, want in enumerate(wants):
                try:
                    m = messages.get(timeout=RPC_TIMEOUT)
                except queue.Empty:
                    raise CaseFailure(f"{noun} {k}: none arrived within {RPC_TIMEOUT:.0f} s") from None
                if isinstance(m, grpc.RpcError):
                    if m.code() == grpc.StatusCode.CANCELLED:
                        raise CaseFailure(f"{noun} {k}: the stream ended")
                    raise CaseFailure(f"{noun} {k}: stream error {m.code().name}: {m.details()}")
                check(f"{noun} {k}", m, want)
        finally:
            call.cancel()

    @staticmethod
    def _open_stream(call, expects_error: bool = False):
        """(error, live) of a server stream: headers arrive once it is live; a rejected call may answer
        with trailers only, so it must also stay open for STREAM_GRACE seconds to count as live."""
        ended = threading.Event()
        call.add_done_callback(lambda _: ended.set())
        try:
            call.initial_metadata()
            ended.wait(RPC_TIMEOUT if expects_error else STREAM_GRACE)  # an expected error is waited for in full
            if call.done() and call.code() != grpc.StatusCode.OK:
                return call, False
            return None, not call.done()
        except grpc.RpcError as e:
            return e, False
        finally:
            call.cancel()

    # -- EthernetService / IommuService
    def _check_fields(self, resp, step):
        if resp is not None:
            for path, want in step.get("expect", {}).get("fields", {}).items():
                compare_field(path, get_path(resp, path), want, self.env)

    def _op_inject_frame(self, step):
        req = pb.ethernet_pb2.InjectFrameRequest(port=self._e(step, "port"), data=data_of(step.get("data", ""), self.env))
        self._check_fields(self._unary(self.client.ethernet_stub.InjectFrame, req, step), step)

    def _op_capture_frames(self, step):
        req = pb.ethernet_pb2.CaptureFramesRequest(port=self._e(step, "port"))
        if "frames" in step.get("expect", {}) or "while" in step:
            call = self.client.ethernet_stub.CaptureFrames(req, timeout=RPC_TIMEOUT + 30)
            return self._collect(call, step, step.get("expect", {}).get("frames", []), "frame", self._check_frame)
        err, _ = self._open_stream(self.client.ethernet_stub.CaptureFrames(req, timeout=RPC_TIMEOUT), "error" in step.get("expect", {}))
        check_error("capture", err, step.get("expect", {}))

    def _op_translate_address(self, step):
        from pcieemu.v1 import iommu_pb2, iommu_pb2_grpc
        stub = iommu_pb2_grpc.IommuServiceStub(self.client.channel)
        req = iommu_pb2.TranslateAddressRequest(rid=self._e(step, "rid"), address=self._e(step, "address", 0),
                                                write=bool(step.get("write", False)), dry_run=bool(step.get("dry_run", True)))
        self._check_fields(self._unary(stub.TranslateAddress, req, step), step)


def run(target: str, name_filter: Optional[str] = None, out=sys.stdout, cases_dir: Path = CASES_DIR,
        token_file: Optional[str] = None) -> List[Result]:
    """Runs the selected cases; prints one line per case and a summary; returns the results."""
    cases = select(load_cases(cases_dir), name_filter)
    runner = Runner(target, token_file)
    results: List[Result] = []
    try:
        try:
            runner.client.wait_ready(10)
        except grpc.FutureTimeoutError:
            raise ConnectionError(f"no server answered at {target}") from None
        try:
            runner.client.get_platform()
        except pcieemu.ServerError as e:
            if e.code == grpc.StatusCode.UNAUTHENTICATED:
                raise ConnectionError(f"{target}: {e}") from None
        for case in cases:
            r = runner.run_case(case)
            results.append(r)
            line = f"PASS {r.name}" if r.passed else f"FAIL {r.name} [{case.spec}]: {r.reason}"
            print(line, file=out, flush=True)
    finally:
        runner.close()
    passed = sum(r.passed for r in results)
    print(f"conformance: {passed} passed, {len(results) - passed} failed", file=out)
    return results


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Run the PcieEmu conformance cases against a server.")
    ap.add_argument("--target", default=None, help="tcp://host:port or unix:///path (default: $PCIEEMU_TARGET or the default endpoints)")
    ap.add_argument("--token-file", default=None, help="the server's TCP token file (default: $PCIEEMU_TOKEN, else the default token file)")
    ap.add_argument("--filter", default=None, help="run only cases whose name contains this text ('*' wildcards allowed)")
    ap.add_argument("--cases", default=str(CASES_DIR), help="directory of case files")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)
    try:
        if args.list:
            for c in select(load_cases(Path(args.cases)), args.filter):
                print(f"{c.name}\t{c.spec}")
            return 0
        results = run(args.target or pcieemu.default_target(), args.filter, cases_dir=Path(args.cases), token_file=args.token_file)
    except (CaseFileError, ConnectionError, ValueError, OSError) as e:
        print(f"conformance: {e}", file=sys.stderr)
        return 2
    if not results:
        print("conformance: no case matched the filter", file=sys.stderr)
        return 1
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
