"""The generated pcieemu.v1 messages and stubs under short names."""
from .v1 import common_pb2, config_pb2, config_pb2_grpc, ethernet_pb2, ethernet_pb2_grpc  # noqa: F401
from .v1 import interrupt_pb2, interrupt_pb2_grpc, memory_pb2, memory_pb2_grpc  # noqa: F401
from .v1 import mmio_pb2, mmio_pb2_grpc, platform_pb2, platform_pb2_grpc  # noqa: F401
from .v1 import session_pb2, session_pb2_grpc, iommu_pb2, iommu_pb2_grpc  # noqa: F401
from .v1 import trace_pb2, trace_pb2_grpc  # noqa: F401

CompletionStatus = common_pb2.CompletionStatus
SUCCESSFUL = common_pb2.COMPLETION_STATUS_SUCCESSFUL
UNSUPPORTED_REQUEST = common_pb2.COMPLETION_STATUS_UNSUPPORTED_REQUEST
COMPLETER_ABORT = common_pb2.COMPLETION_STATUS_COMPLETER_ABORT
CONFIGURATION_RETRY = common_pb2.COMPLETION_STATUS_CONFIGURATION_RETRY


def status_name(status: int) -> str:
    """COMPLETION_STATUS_SUCCESSFUL -> 'SUCCESSFUL'."""
    try:
        return common_pb2.CompletionStatus.Name(status).replace("COMPLETION_STATUS_", "")
    except ValueError:
        return f"UNKNOWN({status})"
