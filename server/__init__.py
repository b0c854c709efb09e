"""scangate.server: the gRPC service (scangate.v1). Filled by the gRPC issue."""
