from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PeerAddress(_message.Message):
    __slots__ = ("island", "address")
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    island: str
    address: str
    def __init__(self, island: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class HelloRequest(_message.Message):
    __slots__ = ("island", "address", "protocol_version")
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    island: str
    address: str
    protocol_version: int
    def __init__(self, island: _Optional[str] = ..., address: _Optional[str] = ..., protocol_version: _Optional[int] = ...) -> None: ...

class HelloResponse(_message.Message):
    __slots__ = ("island", "address", "protocol_version", "peers", "sequence", "peer_address")
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    island: str
    address: str
    protocol_version: int
    peers: _containers.RepeatedCompositeFieldContainer[PeerAddress]
    sequence: int
    peer_address: str
    def __init__(self, island: _Optional[str] = ..., address: _Optional[str] = ..., protocol_version: _Optional[int] = ..., peers: _Optional[_Iterable[_Union[PeerAddress, _Mapping]]] = ..., sequence: _Optional[int] = ..., peer_address: _Optional[str] = ...) -> None: ...

class WatchCatalogRequest(_message.Message):
    __slots__ = ("island", "cursors")
    class CursorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    CURSORS_FIELD_NUMBER: _ClassVar[int]
    island: str
    cursors: _containers.ScalarMap[str, int]
    def __init__(self, island: _Optional[str] = ..., cursors: _Optional[_Mapping[str, int]] = ...) -> None: ...

class CatalogChange(_message.Message):
    __slots__ = ("origin", "seq", "op", "key", "payload_json", "ts", "signature", "origin_cert")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_CERT_FIELD_NUMBER: _ClassVar[int]
    origin: str
    seq: int
    op: str
    key: str
    payload_json: str
    ts: float
    signature: bytes
    origin_cert: bytes
    def __init__(self, origin: _Optional[str] = ..., seq: _Optional[int] = ..., op: _Optional[str] = ..., key: _Optional[str] = ..., payload_json: _Optional[str] = ..., ts: _Optional[float] = ..., signature: _Optional[bytes] = ..., origin_cert: _Optional[bytes] = ...) -> None: ...
