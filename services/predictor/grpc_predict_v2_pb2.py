"""KServe's Open Inference Protocol v2 gRPC messages, also importable as ``grpc_predict_v2_pb2``.

Why this module exists: protoc generated kserve's messages as a top-level module, so every class
says ``ModelInferRequest.__module__ == "grpc_predict_v2_pb2"``. Ray Serve's gRPC proxy pickles each
request message to hand it to a replica, and pickle finds a class by that module name: with no such
module the proxy answers "Can't pickle ModelInferRequest". Importing this module registers kserve's
own module object under the top-level name (nothing is copied, so the classes stay identical).

Every process that pickles or unpickles these messages imports this module before its first
request: the gRPC proxy imports :func:`add_GRPCInferenceServiceServicer_to_server` from here by its
dotted path (:data:`SERVICER_FUNCTION`, for ``gRPCOptions.grpc_servicer_functions``), and a replica
imports it when it unpickles the deployment, whose code uses these messages through this module.
So it works whatever the working directory or ``sys.path`` of a Ray worker, unlike a top-level
``grpc_predict_v2_pb2.py`` file, which only a worker started in its directory could import.

Do not import this (or anything that imports kserve's v2 protobufs) into a process that also uses
``tritonclient.grpc``: both define ``inference.*`` in protobuf's default pool, and the second import
fails with "duplicate symbol".
"""

from __future__ import annotations

import sys

from kserve.protocol.grpc import grpc_predict_v2_pb2 as _pb2
from kserve.protocol.grpc.grpc_predict_v2_pb2 import *  # noqa: F403  (the re-export is the point)
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import add_GRPCInferenceServiceServicer_to_server

sys.modules.setdefault("grpc_predict_v2_pb2", _pb2)

SERVICER_FUNCTION = f"{__name__}.add_GRPCInferenceServiceServicer_to_server"

__all__ = ["SERVICER_FUNCTION", "add_GRPCInferenceServiceServicer_to_server"]
