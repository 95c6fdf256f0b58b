"""TCP authentication: the server's per-start token (``authorization: Bearer``), found by the client
in token=, token_file=, $PCIEEMU_TOKEN or the default token file; the Unix socket needs none."""
import os
import stat

import grpc
import pytest

import pcieemu
from pcieemu import pb


def _bare_channel(server):
    return grpc.insecure_channel(f"127.0.0.1:{server.port}")


def _no_token_anywhere(monkeypatch, tmp_path):
    """No $PCIEEMU_TOKEN and a runtime directory without a token file."""
    monkeypatch.delenv("PCIEEMU_TOKEN", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))


def test_the_token_file_is_private_and_holds_a_random_token(server):
    st = os.stat(server.token_file)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert len(server.token) == 64 and int(server.token, 16) >= 0


def test_tcp_without_a_token_is_unauthenticated(server, monkeypatch, tmp_path):
    _no_token_anywhere(monkeypatch, tmp_path)
    assert pcieemu.resolve_token() is None
    with pcieemu.connect(server.tcp_target) as c:
        assert not c.has_token
        with pytest.raises(pcieemu.ServerError) as e:
            c.list_functions()
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "PCIEEMU_TOKEN" in str(e.value)


def test_every_service_and_health_refuse_a_missing_or_wrong_token(server):
    methods = ["/pcieemu.v1.PlatformService/ListFunctions", "/pcieemu.v1.ConfigService/WriteConfig",
               "/pcieemu.v1.MemoryService/ReadMemory", "/pcieemu.v1.MmioService/ReadMmio",
               "/grpc.health.v1.Health/Check"]
    with _bare_channel(server) as ch:
        for m in methods:
            call = ch.unary_unary(m, request_serializer=lambda _: b"", response_deserializer=lambda b: b)
            for md in (None, [("authorization", "Bearer " + "0" * 64)], [("authorization", server.token)]):
                with pytest.raises(grpc.RpcError) as e:
                    call(None, timeout=10, metadata=md)
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, (m, md)


def test_an_unauthenticated_write_has_no_effect(server):
    with pcieemu.connect(server.tcp_target, token_file=server.token_file) as c:
        before = c.cfg_read8("01:00.0", 0x3C)
        with _bare_channel(server) as ch:
            stub = pb.config_pb2_grpc.ConfigServiceStub(ch)
            with pytest.raises(grpc.RpcError) as e:
                stub.WriteConfig(pb.config_pb2.WriteConfigRequest(rid=0x0100, offset=0x3C, width=1, value=before ^ 0xFF), timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert c.cfg_read8("01:00.0", 0x3C) == before


def test_tcp_with_the_token_works(server):
    with pcieemu.connect(server.tcp_target, token=server.token) as c:
        assert c.has_token
        assert c.cfg_read16("00:00.0", 0) == 0x8086
    with pcieemu.connect(server.tcp_target, token_file=server.token_file) as c:
        assert c.cfg_read16("00:00.0", 0) == 0x8086
        # Streams carry it too.
        with c.session() as s:
            assert s.cfg_read32("00:00.0", 0) & 0xFFFF == 0x8086


def test_token_from_the_environment_and_from_the_default_file(server, monkeypatch, tmp_path):
    _no_token_anywhere(monkeypatch, tmp_path)
    monkeypatch.setenv("PCIEEMU_TOKEN", server.token)
    with pcieemu.connect(server.tcp_target) as c:
        assert c.cfg_read16("00:00.0", 0) == 0x8086
    monkeypatch.delenv("PCIEEMU_TOKEN")
    runtime = tmp_path / "pcie-emu"
    runtime.mkdir(mode=0o700)
    (runtime / "token").write_text(server.token + "\n")
    assert pcieemu.default_token_path() == str(runtime / "token")
    assert pcieemu.default_unix_socket() == str(runtime / "pcie-emu.sock")
    with pcieemu.connect(server.tcp_target) as c:
        assert c.cfg_read16("00:00.0", 0) == 0x8086
    # An explicit token file wins over the environment.
    monkeypatch.setenv("PCIEEMU_TOKEN", "f" * 64)
    with pcieemu.connect(server.tcp_target, token_file=server.token_file) as c:
        assert c.cfg_read16("00:00.0", 0) == 0x8086
    with pytest.raises(OSError):
        pcieemu.connect(server.tcp_target, token_file=str(tmp_path / "missing"))


def test_the_unix_socket_needs_no_token(server, monkeypatch, tmp_path):
    _no_token_anywhere(monkeypatch, tmp_path)
    with pcieemu.connect(server.unix_target) as c:
        assert not c.has_token
        assert c.cfg_read16("00:00.0", 0) == 0x8086
