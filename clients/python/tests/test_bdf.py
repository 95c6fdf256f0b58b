import pytest

from pcieemu import Bdf, format_bdf, parse_bdf, to_rid
from pcieemu.client import grpc_target


def test_parse_and_format_roundtrip():
    for text, rid in [("00:00.0", 0x0000), ("00:01.0", 0x0008), ("01:00.1", 0x0101), ("02:10.2", 0x0282), ("ff:1f.7", 0xFFFF)]:
        assert int(parse_bdf(text)) == rid
        assert format_bdf(rid) == text
        assert str(Bdf.from_rid(rid)) == text


def test_segment_prefix_and_case():
    assert int(parse_bdf("0000:01:10.0")) == 0x0180
    assert int(parse_bdf("01:1F.7")) == 0x01FF


@pytest.mark.parametrize("bad", ["1:0", "01:20.0", "01:00.8", "0001:01:00.0", "zz:00.0", ""])
def test_parse_rejects(bad):
    with pytest.raises(ValueError):
        parse_bdf(bad)


def test_fields_and_ari_function():
    b = Bdf(1, 0x10, 2)
    assert (b.bus, b.device, b.function, b.ari_function) == (1, 0x10, 2, 0x82)
    assert b.rid == 0x0182 and b == 0x0182


def test_to_rid_accepts_all_forms_and_checks_range():
    assert to_rid("01:00.0") == to_rid(0x100) == to_rid(Bdf(1, 0, 0)) == 0x100
    with pytest.raises(ValueError):
        to_rid(0x10000)
    with pytest.raises(ValueError):
        Bdf(0, 32, 0)


def test_grpc_target_parsing():
    assert grpc_target("tcp://127.0.0.1:50551") == ("127.0.0.1:50551", False)
    assert grpc_target("unix:///run/x.sock") == ("unix:///run/x.sock", True)
    assert grpc_target("unix:/run/x.sock") == ("unix:///run/x.sock", True)
    for bad in ["127.0.0.1:1", "tcp://host", "unix://relative"]:
        with pytest.raises(ValueError):
            grpc_target(bad)


def test_generated_code_comes_from_proto():
    # The stamp ties the in-tree generated modules to the current .proto contents (codegen.py).
    import codegen
    gen = codegen.SRC / "pcieemu" / "v1"
    assert (gen / ".stamp").read_text().strip() == codegen.digest(codegen.proto_files(codegen.find_proto_root()))
    assert (gen / "config_pb2.pyi").is_file() and (gen / "config_pb2_grpc.pyi").is_file()
    from pcieemu import pb
    assert pb.status_name(pb.UNSUPPORTED_REQUEST) == "UNSUPPORTED_REQUEST"

