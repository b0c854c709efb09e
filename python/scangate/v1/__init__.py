"""Generated code of the gRPC API ``scangate.v1`` (server/proto/scangate/v1/*.proto).

Do not edit the ``*_pb2*`` modules: run ``python server/proto/generate.py``.
"""
