import numpy as np
import numpy.typing as npt

CODE_LEN: int
BLOCK_SIZE: int
FORMAT_VERSION: int
MAX_SERIAL: int
MAX_KEY_VERSION: int
REDUNDANCY: bytes
ALPHABET: bytes
OK: int
TYPO: int
MALFORMED: int
COUNTERFEIT: int
UNKNOWN_KEY: int
NOT_ISSUED: int

def pack_blocks(first_serial: int, level: int, out: npt.NDArray[np.uint8]) -> None: ...
def pack_serials(
    serials: npt.NDArray[np.uint64], levels: npt.NDArray[np.uint8], out: npt.NDArray[np.uint8]
) -> None: ...
def encode_text(
    blocks: npt.NDArray[np.uint8], key_version: int, out: npt.NDArray[np.uint8], column: int = 0
) -> None: ...
def split_lines(buf: bytes | bytearray | memoryview | npt.NDArray[np.uint8]) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64]
]: ...
def decode_spans(
    buf: bytes | bytearray | memoryview | npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint16], npt.NDArray[np.uint8]]: ...
def unpack_blocks(
    plain: npt.NDArray[np.uint8], status: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]: ...
def lookup_ranges(
    serials: npt.NDArray[np.uint64],
    versions: npt.NDArray[np.uint16],
    levels: npt.NDArray[np.uint8],
    status: npt.NDArray[np.uint8],
    firsts: npt.NDArray[np.uint64],
    lasts: npt.NDArray[np.uint64],
    range_versions: npt.NDArray[np.uint16],
    range_levels: npt.NDArray[np.uint8],
) -> npt.NDArray[np.int64]: ...
def check_symbol(symbols: npt.NDArray[np.uint8]) -> int: ...
def decode_lines(
    buf: bytes | bytearray | memoryview | npt.NDArray[np.uint8],
    offset: int,
    blocks: npt.NDArray[np.uint8],
    versions: npt.NDArray[np.uint16],
    status: npt.NDArray[np.uint8],
    seen: npt.NDArray[np.uint8],
) -> tuple[int, int]: ...
def resolve_codes(
    plain: npt.NDArray[np.uint8],
    versions: npt.NDArray[np.uint16],
    status: npt.NDArray[np.uint8],
    firsts: npt.NDArray[np.uint64],
    lasts: npt.NDArray[np.uint64],
    range_versions: npt.NDArray[np.uint16],
    range_levels: npt.NDArray[np.uint8],
    range_lines: npt.NDArray[np.int64],
    serials: npt.NDArray[np.uint64],
    levels: npt.NDArray[np.uint8],
    lines: npt.NDArray[np.int64],
    hits: npt.NDArray[np.uint8],
) -> None: ...
